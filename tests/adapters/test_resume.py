"""`--lora` runs resume exactly, as full training does: Ctrl-C, then SIGKILL, then --resume give the loss sequence,
the adapters and the projector of an uninterrupted run bit for bit; two gloo processes match one."""

from __future__ import annotations

import signal

import pytest
import torch
from safetensors.torch import load_file

from mmv.train.state import checkpoint_paths, load_resume
from tests.adapters.conftest import rows
from tests.conftest import TOKENIZER_DIR
from tests.train.helpers import VISION_DIR, VLM_PTH, caption_row, mmv, read_metrics, start, text_row, write_parquet
from tests.train.test_resume import wait_for_step


def args(data, out, *extra: str) -> list[str]:
    return [
        *("sft", "--data", str(data), "--out", str(out), "--init", str(VLM_PTH)),
        *("--vision", str(VISION_DIR), "--tokenizer", str(TOKENIZER_DIR)),
        *("--lora", "4", "--dora", "--lora-dropout", "0.1", "--lr", "1e-2", "--batch-size", "2"),
        *("--save-every", "3", "--keep", "2", "--log-every", "1", "--seed", "7", *extra),
    ]


def adapter(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume_is_bit_identical(tmp_path):
    # dropout and the reference's random preprocessing on: their seeded draws must replay exactly too
    data = write_parquet(tmp_path / "data.parquet", [text_row(i) if i % 5 == 4 else caption_row(i) for i in range(20)])
    extra = ("--max-steps", "18")  # 10 steps an epoch: crosses one
    reference = start(args(data, tmp_path / "reference", *extra))
    run = tmp_path / "run"
    first = start(args(data, run, *extra))
    wait_for_step(run, 4, first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    interrupted_at = load_resume(checkpoint_paths(run)[-1]).progress.step
    second = start([*args(data, run, *extra), "--resume"])
    wait_for_step(run, interrupted_at + 5, second)
    second.kill()
    second.communicate(timeout=60)
    assert second.returncode == -signal.SIGKILL
    third = mmv([*args(data, run, *extra), "--resume"])
    assert third.returncode == 0, third.stderr
    _, err = reference.communicate(timeout=240)
    assert reference.returncode == 0, err

    expected, got = read_metrics(tmp_path / "reference"), read_metrics(run)
    assert [r["step"] for r in got] == list(range(1, 19))
    assert [r["loss"] for r in got] == [r["loss"] for r in expected]
    final, final_ref = load_resume(checkpoint_paths(run)[-1]), load_resume(checkpoint_paths(tmp_path / "reference")[-1])
    assert final.model.keys() == final_ref.model.keys()
    assert all(torch.equal(final.model[k], final_ref.model[k]) for k in final_ref.model)
    a, b = adapter(run), adapter(tmp_path / "reference")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    data = write_parquet(tmp_path / "data.parquet", rows(16))

    def command(out, batch):
        # no dropout: one process and two draw their masks for different rows
        return [a for a in args(data, tmp_path / out, "--max-steps", "4") if a not in ("--lora-dropout", "0.1")] + [
            "--batch-size",
            str(batch),
        ]

    single = start(command("single", 4))
    ddp = mmv([*command("ddp", 2), "--nproc", "2", "--json"])
    assert ddp.returncode == 0, ddp.stderr
    _, err = single.communicate(timeout=240)
    assert single.returncode == 0, err
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    a, b = adapter(tmp_path / "ddp"), adapter(tmp_path / "single")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
