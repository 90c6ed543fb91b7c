"""Resume checkpoints: atomic writes, --keep, RNG round trips, a full disk, metrics truncation."""

from __future__ import annotations

import hashlib
import json
import random
import resource
import signal

import numpy as np
import pytest
import torch

from mmv.errors import MmvError
from mmv.train.rundir import truncate_metrics
from mmv.train.state import (
    Progress,
    ResumeState,
    capture_rng,
    checkpoint_paths,
    latest_resume,
    load_resume,
    restore_rng,
    save_resume,
)


def state(step: int, size: int = 16) -> ResumeState:
    return ResumeState(
        progress=Progress(
            step=step, epoch=1, position=8 * step, samples_seen=8 * step, total_samples=100, world_size=2
        ),
        model={"vision_proj.mlp.1.weight": torch.full((size,), float(step))},
        optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        scaler=None,
        rng=capture_rng(),
    )


def test_round_trip_and_keep_only_the_newest(tmp_path):
    for step in (5, 10, 15, 20):
        save_resume(tmp_path, state(step), keep=2)
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["step-00000015.pt", "step-00000020.pt"]
    loaded = latest_resume(tmp_path)
    assert loaded.progress == state(20).progress
    assert torch.equal(loaded.model["vision_proj.mlp.1.weight"], torch.full((16,), 20.0))
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_resume(tmp_path, state(1), keep=1)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(latest_resume(tmp_path).rng)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path):
    previous = save_resume(tmp_path, state(1), keep=3)
    digest = hashlib.sha256(previous.read_bytes()).hexdigest()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))  # the kernel refuses writes past 256 KiB
    try:
        with pytest.raises(MmvError, match="intact"):
            save_resume(tmp_path, state(2, size=1 << 20), keep=3)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert checkpoint_paths(tmp_path) == [previous]
    assert hashlib.sha256(previous.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [previous.name]  # no temp file left
    assert load_resume(previous).progress.step == 1


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model.embed_tokens.weight": torch.zeros(2)}, path)
    with pytest.raises(MmvError, match="not an mmv resume checkpoint"):
        load_resume(path)


def test_metrics_past_the_resumed_step_are_dropped(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 8)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 8, "lo')  # torn by a kill
    truncate_metrics(tmp_path, 5)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
