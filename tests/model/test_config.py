"""Presets reproduce the reference sizes (REFERENCE.md section 1)."""

from __future__ import annotations

import pytest
import torch

from mmv.config import PRESETS, preset
from mmv.errors import MmvError
from mmv.model.vlm import MiniMindVLM


@pytest.mark.parametrize("name, millions", [("minimind-3v", 63.9), ("minimind-3v-moe", 198.4)])
def test_llm_parameter_counts_match_the_reference(name, millions):
    with torch.device("meta"):
        model = MiniMindVLM(preset(name))
    llm = sum(p.numel() for key, p in model.named_parameters() if not key.startswith("vision_proj"))
    assert round(llm / 1e6, 1) == millions


def test_default_sizes():
    config = preset("minimind-3v")
    assert (config.head_dim, config.intermediate_size, config.vocab_size) == (96, 2432, 6400)
    assert config.vision_variant == "p32-256" and config.projector_input_size == 768
    assert preset("tiny", vision_variant="p16-256").projector_input_size == 128


def test_round_trip_through_dict():
    config = preset("tiny-moe")
    assert type(config).from_dict({**config.to_dict(), "unrelated": 1}) == config


def test_unknown_preset():
    with pytest.raises(MmvError, match="tiny"):
        preset("huge")
    assert {"minimind-3v", "minimind-3v-moe", "tiny"} <= PRESETS.keys()


def test_fresh_weights_start_near_uniform_loss():
    import math

    torch.manual_seed(0)
    model = MiniMindVLM(preset("tiny"))
    model.init_fresh_weights()
    ids = torch.randint(0, 6400, (2, 32))
    loss = model(ids, labels=ids).loss.item()
    assert abs(loss - math.log(6400)) < 0.5
