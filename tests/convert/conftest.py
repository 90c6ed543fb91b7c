"""Shared for the convert tests: every fixture variant converted once to a float32 transformers folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import FIXTURE_VARIANTS, REFERENCE, TOKENIZER_DIR, fixture_base_config


@pytest.fixture(scope="session")
def tf_folders(tmp_path_factory) -> dict[str, Path]:
    """fixture name -> transformers folder of its float32 model.pth (the encoder beside it included)."""
    from mmv.convert import convert

    root = tmp_path_factory.mktemp("transformers")
    for name in FIXTURE_VARIANTS:
        convert(
            REFERENCE / name / "model.pth",
            "transformers",
            root / name,
            tokenizer=TOKENIZER_DIR,
            base=fixture_base_config(name),
        )
    return {name: root / name for name in FIXTURE_VARIANTS}


@pytest.fixture(autouse=True)
def empty_download_cache(tmp_path, monkeypatch):
    """No test may pick a tokenizer or encoder out of the developer's real download cache."""
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "mmv-home"))


def greedy(model, input_ids: torch.Tensor, steps: int, **inputs) -> torch.Tensor:
    """mmv's own greedy decode with its KV cache: the prompt plus `steps` tokens."""
    cache = model.new_cache(1, input_ids.shape[1] + steps, torch.float32, "cpu")
    sequence = input_ids
    with torch.no_grad():
        logits = model(input_ids, cache=cache, **inputs).logits
        for _ in range(steps):
            token = logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, token], dim=1)
            logits = model(token, cache=cache).logits
    return sequence
