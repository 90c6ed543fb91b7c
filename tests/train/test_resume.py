"""Exact resume with real subprocesses: Ctrl-C (SIGINT) and SIGKILL mid-run, then --resume, give the same loss
sequence and the same final weights, bit for bit, as a run that was never interrupted; a second Ctrl-C never costs
a checkpoint."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mmv.train.state import checkpoint_paths, load_resume
from tests.conftest import TOKENIZER_DIR
from tests.faults import killer
from tests.train.helpers import (
    VISION_DIR,
    VLM_PTH,
    base_args,
    caption_row,
    env,
    mmv,
    read_metrics,
    start,
    text_row,
    wait_for_step,
    write_parquet,
)


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


def ctrl_c_args(data: Path, out: Path) -> list[str]:
    args = [*base_args(data, out), "--init", str(VLM_PTH), "--batch-size", "2", "--epochs", "100"]
    return [*args, "--save-every", "2", "--keep", "2", "--log-every", "1"]


def stopped_with_a_whole_save(process, run: Path, err: str) -> str:
    """Exit 130, one line about the interruption, and every file of the last save complete and readable."""
    from mmv.loading import load_model
    from mmv.train.saves import read_record

    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("interrupted"), err
    assert not [line for line in lines[:-1] if "interrupt" in line], err
    for bad in ("Traceback", "could not write", "Aborted", "terminate called"):
        assert bad not in err, err
    checkpoint = load_resume(checkpoint_paths(run)[-1])
    record = read_record(run)
    assert record.finished and record.step <= checkpoint.progress.step
    assert load_model(run, need_vision=True).model is not None
    return lines[-1]


@pytest.mark.slow
def test_two_ctrl_c_at_any_delay_never_cost_a_checkpoint(tmp_path):
    """The second Ctrl-C anywhere: mid-step (the run stops at once), or inside the write (held until it ends)."""
    data = write_parquet(tmp_path / "data.parquet", [caption_row(i) for i in range(16)])
    delays = (0.0, 0.01, 0.05, 0.2)
    runs = [tmp_path / f"run-{delay}" for delay in delays]
    processes = [start(ctrl_c_args(data, run)) for run in runs]
    for process, run, delay in zip(processes, runs, delays, strict=True):
        wait_for_step(run, 3, process)
        process.send_signal(signal.SIGINT)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
    for process, run in zip(processes, runs, strict=True):
        _, err = process.communicate(timeout=240)
        stopped_with_a_whole_save(process, run, err)


@pytest.mark.slow
def test_a_second_ctrl_c_during_the_save_stops_right_after_it(tmp_path):
    """A slow disk widens the save; the second Ctrl-C comes while save.json marks it unfinished."""
    data = write_parquet(tmp_path / "data.parquet", [caption_row(i) for i in range(16)])
    run = tmp_path / "run"
    slow_disk = killer("slow", 0.3, ctrl_c_args(data, run))
    process = subprocess.Popen(slow_disk, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(run, 3, process)
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while '"finished": false' not in (run / "save.json").read_text():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    line = stopped_with_a_whole_save(process, run, err)
    step = load_resume(checkpoint_paths(run)[-1]).progress.step
    assert line == (
        f"interrupted again while saving: stopped once it was written: resume checkpoint "
        f"{run / 'checkpoints' / f'step-{step:08d}.pt'}; continue with `mmv sft --out {run} --resume`"
    )
