"""The run directory: what `mmv convert` and `mmv chat` read back (keep the layout stable).

RUN_DIR/config.json           {"mmv_version", "stage", "model", "train", "data", "vision_dir", "tokenizer_dir",
                               "weights"}
RUN_DIR/metrics.jsonl         one line per logged step
RUN_DIR/<stage>_vlm_<H>[_moe].pth and .safetensors   reference-compatible float16 weights
RUN_DIR/checkpoints/step-N.pt resume checkpoints (state.py)
RUN_DIR/vision/               the trained encoder, with --train-vision only
RUN_DIR/save.json             which step the weights (and vision/) hold, and whether their save finished (saves.py)
RUN_DIR/.mmv-run.lock         held while a run owns the directory (lock.py)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmv import __version__
from mmv.adapters.spec import ADAPTER_DIR
from mmv.errors import MmvError
from mmv.fsio import atomic_write, staged_folder
from mmv.layout import CONFIG_FILE, PREPROCESSOR_FILE, VISION_SUBFOLDER, read_json_object
from mmv.train.config import STAGE_DEFAULTS
from mmv.train.saves import SaveRecord, write_record
from mmv.train.state import write_error

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM

METRICS_FILE = "metrics.jsonl"


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def run_config(
    stage: str,
    model: dict[str, Any],
    train: dict[str, Any],
    data: dict[str, Any],
    vision_dir: str | None,
    tokenizer_dir: str,
    weights: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """A run's config.json; `threads` (the CPU threads each process computes on) lets a resume reduce in the same
    order as the start did, so its numbers match an uninterrupted run however busy the machine is then."""
    return {
        "mmv_version": __version__,
        "stage": stage,
        "model": model,
        "train": train,
        "data": data,
        "vision_dir": vision_dir,
        "tokenizer_dir": tokenizer_dir,
        "weights": weights,
        **({"threads": threads} if threads else {}),
    }


# what every run config holds, with the JSON types a reader relies on
RUN_CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "stage": (str,),
    "model": (dict,),
    "train": (dict,),
    "data": (dict,),
    "vision_dir": (str, type(None)),
    "tokenizer_dir": (str,),
    "weights": (str,),
}
JSON_NAMES = {str: "a string", dict: "an object", type(None): "null"}


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/config.json, checked to hold every field with its type (it may have been edited by hand)."""
    path = run_dir / CONFIG_FILE
    config = read_json_object(path)
    for name, types in RUN_CONFIG_FIELDS.items():
        if name not in config:
            raise MmvError(f"{path} is not an mmv run config: it has no {name!r} field")
        if not isinstance(config[name], types):
            wanted = " or ".join(JSON_NAMES[t] for t in types)
            raise MmvError(f"{path}: {name!r} must be {wanted}, got {config[name]!r}")
    if config["stage"] not in STAGE_DEFAULTS:
        raise MmvError(f"{path}: 'stage' must be {' or '.join(STAGE_DEFAULTS)}, got {config['stage']!r}")
    weights = config["weights"]
    # a reader opens RUN_DIR/weights: the weights file, or a LoRA run's adapter folder
    if Path(weights).name != weights or not (weights.endswith(".pth") or weights == ADAPTER_DIR):
        raise MmvError(
            f"{path}: 'weights' must name a .pth file (or {ADAPTER_DIR}/) in the run directory, got {weights!r}"
        )
    return config


def recorded_threads(run_dir: Path) -> int | None:
    """The thread count a run started on (see run_config); None where it recorded none or cannot be read (the
    resume itself reports an unreadable config)."""
    try:
        value = json.loads((run_dir / CONFIG_FILE).read_text()).get("threads")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def is_run_dir(path: Path) -> bool:
    """A folder holding an mmv run config (as opposed to a transformers folder)."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "weights" in config and "train" in config


def half_state(model: MiniMindVLM) -> dict[str, torch.Tensor]:
    """The reference checkpoint layout in float16; tied weights become separate tensors (safetensors needs it)."""
    state = model.checkpoint_state_dict()
    return {k: v.detach().to("cpu", torch.float16).clone() for k, v in state.items()}


def save_weights(run_dir: Path, name: str, model: MiniMindVLM) -> Path:
    """`name`.pth and `name`.safetensors, both written atomically."""
    from safetensors.torch import save as to_safetensors

    state = half_state(model)
    pth = run_dir / name
    try:
        atomic_write(pth, lambda handle: torch.save(state, handle))
        blob = to_safetensors(state, metadata={"format": "pt"})
        atomic_write(pth.with_suffix(".safetensors"), lambda handle: handle.write(blob))
    except (OSError, RuntimeError) as exc:
        raise MmvError(f"could not write the weights {pth}: {write_error(exc)}; the previous file is intact") from None
    return pth


def save_vision(run_dir: Path, encoder: torch.nn.Module, source_dir: str) -> Path:
    """The trained encoder as RUN_DIR/vision (save_pretrained + the source's processor config), swapped in whole."""
    final = run_dir / VISION_SUBFOLDER
    try:
        with staged_folder(final) as staged:
            encoder.save_pretrained(str(staged), safe_serialization=True)
            shutil.copy2(Path(source_dir) / PREPROCESSOR_FILE, staged / PREPROCESSOR_FILE)
    except OSError as exc:
        raise MmvError(f"could not write the trained encoder to {final}: {exc}") from None
    return final


def save_model_files(run_dir: Path, name: str, model: MiniMindVLM, step: int, vision_source: str | None = None) -> Path:
    """The weights of `step` (and the trained encoder, given its source folder) as one save: save.json is marked
    unfinished before the first file is replaced and finished after the last (see saves.py)."""
    encoder = model.vision_encoder if vision_source is not None else None
    parts = (name, str(Path(name).with_suffix(".safetensors")))
    if encoder is not None:
        parts += (VISION_SUBFOLDER,)
    write_record(run_dir, SaveRecord(step, parts, finished=False))
    pth = save_weights(run_dir, name, model)
    if encoder is not None and vision_source is not None:
        save_vision(run_dir, encoder, vision_source)
    write_record(run_dir, SaveRecord(step, parts, finished=True))
    return pth


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop metric lines past the resumed step, so a resumed run's log reads like an uninterrupted one."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill mid-write
    text = "".join(f"{line}\n" for line in kept)
    atomic_write(path, lambda handle: handle.write(text.encode()))
