"""`mmv data synth --video` and `mmv data check --frames`, run as real subprocesses."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.cli.test_data_cli import mmv
from tests.conftest import TOKENIZER_DIR


@pytest.mark.slow
def test_synth_video_then_check_measures_the_frames(tmp_path):
    made = mmv("data", "synth", "--video", "--out", tmp_path / "d", "--n", "6", "--eval-n", "4", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["rows"] == {"pretrain": 6, "sft": 6, "eval": 4}
    assert pq.read_schema(tmp_path / "d" / "eval.parquet").names == ["conversations", "image_bytes", "video_bytes"]
    lengths = {}
    for frames in (2, 8):
        checked = mmv(
            "data", "check", tmp_path / "d" / "sft.parquet", "--tokenizer", TOKENIZER_DIR, "--frames", frames, "--json"
        )
        assert checked.returncode == 0, checked.stderr
        [report] = json.loads(checked.stdout)["files"]
        assert report["with_video"] == 6 and report["bad"] == 0
        lengths[frames] = report["tokens"]["min"]
    assert lengths[8] - lengths[2] > 6 * 64


def test_synth_takes_one_task(tmp_path):
    both = mmv("data", "synth", "--video", "--hires", "--out", tmp_path / "d")
    assert both.returncode == 2
    assert both.stderr.strip() == "error: --hires and --video are two different tasks: choose one"
    assert not (tmp_path / "d").exists()
