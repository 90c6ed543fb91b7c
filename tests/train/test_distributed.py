"""DDP with two real gloo processes (launched through `--nproc 2`, i.e. torchrun): the same losses as one process
with the same global batch, and a 2-process run resumed by one process continues the same run."""

from __future__ import annotations

import shutil

import pytest
import torch

from mmv.train.distributed import strip_nproc
from mmv.train.state import checkpoint_paths, load_resume
from tests.train.helpers import VLM_PTH, base_args, caption_row, mmv, read_metrics, start, text_row, write_parquet


def test_strip_nproc():
    assert strip_nproc(["sft", "--nproc", "2", "--json", "--nproc=4", "--out", "x"]) == ["sft", "--json", "--out", "x"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_into_one(tmp_path):
    rows = [text_row(i) if i % 4 == 3 else caption_row(i, words=2 + i % 7) for i in range(24)]
    data = write_parquet(tmp_path / "data.parquet", rows)

    def command(out, batch):
        return [
            *base_args(data, tmp_path / out),
            "--init",
            str(VLM_PTH),
            "--batch-size",
            str(batch),
            "--max-steps",
            "6",
            "--save-every",
            "3",
            "--keep",
            "5",
            "--log-every",
            "1",
        ]

    single = start(command("single", 4))
    ddp = mmv([*command("ddp", 2), "--nproc", "2", "--json"])
    assert ddp.returncode == 0, ddp.stderr
    _, err = single.communicate(timeout=240)
    assert single.returncode == 0, err
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in two] == list(range(1, 7))
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert '"world_size": 2' in ddp.stdout and ddp.stdout.count("\n") == 1  # rank 0 alone reports

    # as if killed after step 3: one process picks up the 2-process run (batch 2 x accum 2 keeps the global batch)
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ddp", resumed)
    for path in checkpoint_paths(resumed)[1:]:
        path.unlink()
    assert load_resume(checkpoint_paths(resumed)[-1]).progress.world_size == 2
    done = mmv([*command("resumed", 2), "--resume", "--accum", "2"])
    assert done.returncode == 0, done.stderr
    assert "resuming at step 3" in done.stderr and "written by 2 process(es)" in done.stderr
    after = read_metrics(resumed)
    assert [r["step"] for r in after] == list(range(1, 7))
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    final, final_one = (
        load_resume(checkpoint_paths(resumed)[-1]),
        load_resume(checkpoint_paths(tmp_path / "single")[-1]),
    )
    assert final.progress.samples_seen == final_one.progress.samples_seen == 24
    assert final.progress.world_size == 1
    assert all(torch.allclose(final.model[k], final_one.model[k], atol=1e-5) for k in final_one.model)
