"""LoRA runs on the fixture VLM, trained in-process through the same `run()` as `mmv sft`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENIZER_DIR, one_thread
from tests.train.helpers import VISION_DIR, VLM_PTH, caption_row, text_row, write_parquet


def rows(count: int = 12) -> list[dict[str, Any]]:
    return [text_row(i) if i % 4 == 3 else caption_row(i, words=2 + i % 5) for i in range(count)]


def train_lora(out: Path, data: Path, init: Path = VLM_PTH, stage: str = "sft", **overrides: Any) -> dict[str, Any]:
    """A short `mmv sft --lora` run (or `stage`); a high learning rate moves the adapters far from their zero start."""
    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run

    values = {"init": str(init), "lora": 4, "lr": 2e-2, "batch_size": 4, "max_steps": 6, "log_every": 1}
    values["device"] = "cpu"
    cfg = stage_config(stage, **{**values, **overrides})
    request = RunRequest(
        cfg=cfg,
        out=out,
        data=[str(data)],
        vision=str(VISION_DIR),
        tokenizer=str(TOKENIZER_DIR),
        data_options={"random_system_prompt": False, "drop_empty_think": False},
    )
    with one_thread():
        return run(request, stage)


@pytest.fixture(scope="session")
def lora_data(tmp_path_factory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("lora-data") / "data.parquet", rows())


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, lora_data) -> Path:
    out = tmp_path_factory.mktemp("lora-run") / "run"
    train_lora(out, lora_data)
    return out


@pytest.fixture(scope="session")
def dora_run(tmp_path_factory, lora_data) -> Path:
    out = tmp_path_factory.mktemp("dora-run") / "run"
    train_lora(out, lora_data, dora=True, lora_targets="q,v,o,up,down")
    return out
