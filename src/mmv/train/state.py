"""Resume checkpoints: trainable weights, optimizer, scaler, RNG states and the position in the data order.

Every file is written atomically (temporary file in the same directory, fsync, rename, fsync of the directory),
so a crash or a full disk mid-write leaves the previous checkpoint as it was. The position is kept in samples,
not steps, so a run resumed with another world size continues at the same place in the epoch's order.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmv.errors import MmvError
from mmv.fsio import atomic_write

FORMAT = "mmv-resume-1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    position: int = 0  # samples of `epoch`'s order consumed by all ranks together
    samples_seen: int = 0  # samples consumed over all epochs: the lr schedule's clock
    total_samples: int = 0  # where the run ends (epochs x rows, or max_steps x the first global batch)
    world_size: int = 1  # the world size that wrote this position
    skipped: int = 0  # data rows skipped so far (bad or too long), all ranks together


@dataclass
class ResumeState:
    progress: Progress
    model: dict[str, torch.Tensor]  # trainable parameters only; the frozen ones come from --init again
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: dict[str, Any]


def write_error(exc: BaseException) -> str:
    """The OS reason behind a failed write (torch.save reports a full disk as a RuntimeError around it)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def capture_rng() -> dict[str, Any]:
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """Resume checkpoints of a run, oldest first."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_resume(run_dir: Path, state: ResumeState, keep: int) -> Path:
    """Write `checkpoints/step-N.pt` atomically, then drop all but the newest `keep`."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state.progress.step:08d}.pt"
    payload = {
        "format": FORMAT,
        "progress": dataclasses.asdict(state.progress),
        "model": state.model,
        "optimizer": state.optimizer,
        "scaler": state.scaler,
        "rng": state.rng,
    }
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except (OSError, RuntimeError) as exc:
        previous = checkpoint_paths(run_dir)
        kept = f"; {previous[-1]} is intact" if previous else ""
        raise MmvError(f"could not write the resume checkpoint {path}: {write_error(exc)}{kept}") from None
    for old in checkpoint_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_resume(path: Path) -> ResumeState:
    """Read a resume checkpoint (weights_only: a checkpoint is data, never code)."""
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MmvError(f"cannot read the resume checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MmvError(f"{path} is not an mmv resume checkpoint (expected format {FORMAT})")
    return ResumeState(
        progress=Progress(**payload["progress"]),
        model=payload["model"],
        optimizer=payload["optimizer"],
        scaler=payload["scaler"],
        rng=payload["rng"],
    )


def latest_resume(run_dir: Path) -> ResumeState | None:
    paths = checkpoint_paths(run_dir)
    return load_resume(paths[-1]) if paths else None
