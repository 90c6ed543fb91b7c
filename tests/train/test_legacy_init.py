"""`mmv sft --init` from a MiniMind2-V checkpoint: its own placeholder ("@" x 196) in the data, recorded in the run."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import SHARED
from tests.train.helpers import caption_row, run_cli, text_row, write_parquet

LEGACY = SHARED / "fixtures" / "legacy"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [text_row(i) if i % 4 == 3 else caption_row(i) for i in range(8)]
    return write_parquet(tmp_path_factory.mktemp("data") / "sft.parquet", rows)


@pytest.mark.parametrize("generation", ["minimind2-v-2510", "minimind2-v-2502"])
def test_sft_from_a_minimind2_checkpoint_trains_on_its_placeholders_and_chats(data, tmp_path, generation):
    era = LEGACY / generation
    out = tmp_path / "run"
    args = ["sft", "--data", str(data), "--out", str(out), "--init", str(era / "model.pth")]
    args += ["--vision", str(era / "vision"), "--tokenizer", str(era / "tokenizer")]
    result = run_cli(["--json", *args, "--max-steps", "2", "--batch-size", "4", "--save-every", "2"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["data"]["bad"] == summary["data"]["markers"] == 0 and summary["data"]["rows"] == 8
    assert math.isfinite(summary["loss"])
    spec = json.loads((out / "config.json").read_text())["data"]
    assert (spec["image_token"], spec["tokens_per_image"]) == ("@", 196)

    reply = run_cli(["chat", str(era / "image.png"), "--model", str(out), "--prompt", "hi", "--max-new-tokens", "3"])
    assert reply.exit_code == 0, reply.stderr
    assert "read as MiniMind2-V" in reply.stderr and "(option:" not in reply.stderr  # its config records the heads
