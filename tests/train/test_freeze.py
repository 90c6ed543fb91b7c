"""Freeze modes: which parameters train (REFERENCE.md section 6), with and without the encoder."""

from __future__ import annotations

import pytest

from mmv.config import preset
from mmv.errors import MmvError
from mmv.model.vision import load_encoder
from mmv.model.vlm import MiniMindVLM
from mmv.train.freeze import apply_freeze
from tests.train.helpers import VISION_DIR


@pytest.fixture(scope="module")
def model():
    return MiniMindVLM(preset("tiny"), load_encoder(VISION_DIR))


def prefixes(names):
    return {".".join(n.split(".")[:3]) if n.startswith("model.layers") else n.split(".")[0] for n in names}


def test_projector_only(model):
    names = apply_freeze(model, "projector", False)
    assert names and all(n.startswith("vision_proj.") for n in names)


def test_ends_is_projector_plus_first_and_last_block(model):
    names = apply_freeze(model, "ends", False)
    assert prefixes(names) == {"vision_proj", "model.layers.0", "model.layers.2"}
    assert not model.model.embed_tokens.weight.requires_grad


def test_none_trains_the_whole_llm_and_projector_but_not_the_encoder(model):
    names = apply_freeze(model, "none", False)
    assert "model.embed_tokens.weight" in names and "model.norm.weight" in names
    assert not any(n.startswith("vision_encoder.") for n in names)
    assert not model.vision_encoder.training


def test_train_vision_adds_the_encoder(model):
    names = apply_freeze(model, "projector", True)
    encoder = {n for n in names if n.startswith("vision_encoder.")}
    assert len(encoder) == len(list(model.vision_encoder.parameters())) and model.vision_encoder.training


def test_train_vision_without_an_encoder_is_refused():
    with pytest.raises(MmvError, match=r"^training the vision encoder needs one$") as refused:
        apply_freeze(MiniMindVLM(preset("tiny")), "none", True)
    assert refused.value.options == ("train_vision", "vision")
