"""Exact resume with real subprocesses: Ctrl-C (SIGINT) and SIGKILL mid-run, then --resume, give the same loss
sequence and the same final weights, bit for bit, as a run that was never interrupted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch

from mmv.train.state import checkpoint_paths, load_resume
from tests.conftest import TOKENIZER_DIR
from tests.train.helpers import VISION_DIR, VLM_PTH, caption_row, mmv, read_metrics, start, text_row, write_parquet


def args(data: Path, out: Path) -> list[str]:
    # the reference's random preprocessing stays on: it is seeded, so it must replay exactly too
    return [
        "sft",
        "--data",
        str(data),
        "--out",
        str(out),
        "--init",
        str(VLM_PTH),
        "--vision",
        str(VISION_DIR),
        "--tokenizer",
        str(TOKENIZER_DIR),
        "--freeze",
        "none",
        "--lr",
        "1e-3",
        "--batch-size",
        "2",
        "--max-steps",
        "40",
        "--save-every",
        "4",
        "--keep",
        "2",
        "--log-every",
        "1",
        "--seed",
        "7",
    ]


def wait_for_step(run: Path, step: int, process, timeout: float = 180) -> None:
    """Until metrics.jsonl shows `step` (the process must still be running then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early: {process.communicate()[1][-2000:]}"
        try:
            lines = (run / "metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if any(line.startswith(f'{{"step": {step},') for line in lines):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume_is_bit_identical(tmp_path):
    rows = [text_row(i) if i % 5 == 4 else caption_row(i) for i in range(48)]  # 24 steps an epoch: crosses one
    data = write_parquet(tmp_path / "data.parquet", rows)
    reference = start(args(data, tmp_path / "reference"))
    run = tmp_path / "run"

    first = start(args(data, run))
    wait_for_step(run, 6, first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "--resume" in err
    interrupted_at = load_resume(checkpoint_paths(run)[-1]).progress.step
    assert interrupted_at >= 6  # Ctrl-C saved where it stopped, not at the last periodic checkpoint

    second = start([*args(data, run), "--resume"])
    wait_for_step(run, interrupted_at + 7, second)
    second.kill()
    second.communicate(timeout=60)
    assert second.returncode == -signal.SIGKILL

    third = mmv([*args(data, run), "--resume"])
    assert third.returncode == 0, third.stderr
    assert "resuming at step" in third.stderr
    _, err = reference.communicate(timeout=240)
    assert reference.returncode == 0, err

    expected, got = read_metrics(tmp_path / "reference"), read_metrics(run)
    assert [r["step"] for r in got] == list(range(1, 41))
    assert [r["loss"] for r in got] == [r["loss"] for r in expected]  # bit-identical floats
    assert [r["lr"] for r in got] == [r["lr"] for r in expected]
    final, final_ref = load_resume(checkpoint_paths(run)[-1]), load_resume(checkpoint_paths(tmp_path / "reference")[-1])
    assert final.progress == final_ref.progress and final.progress.step == 40
    assert all(torch.equal(final.model[k], final_ref.model[k]) for k in final_ref.model)
    for (_, a), (_, b) in zip(
        sorted(final.optimizer["state"].items()), sorted(final_ref.optimizer["state"].items()), strict=True
    ):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    weights = torch.load(run / "sft_vlm_64.pth", weights_only=True)
    weights_ref = torch.load(tmp_path / "reference" / "sft_vlm_64.pth", weights_only=True)
    assert all(torch.equal(weights[k], weights_ref[k]) for k in weights_ref)
