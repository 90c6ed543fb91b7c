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


def test_the_reference_variants_are_vision_presets():
    from mmv.config import VISION_PRESETS, VisionConfig

    assert VISION_PRESETS == {
        "p32-256": VisionConfig("siglip", 256, 32, None, "ln-mlp", 1),
        "p16-256": VisionConfig("siglip", 256, 16, None, "ln-mlp", 2),
        "p16-naflex": VisionConfig("siglip2", None, 16, 256, "mlp", 4),
    }
    for name, vision in VISION_PRESETS.items():
        config = preset("tiny", vision_variant=name)
        assert config.vision == vision and config.image_token_len == vision.tokens_per_image == 64


def test_a_custom_vision_config_names_its_tokens_and_round_trips():
    from mmv.config import VisionConfig, VLMConfig

    vision = VisionConfig("dinov2", 224, 14, None, "ln-mlp", 2)
    config = preset("tiny").replace(vision=vision)
    assert (config.vision_variant, config.image_token_len, config.projector_input_size) == ("custom", 64, 128)
    assert VLMConfig.from_dict(config.to_dict()) == config
    legacy = preset("tiny").replace(vision=VisionConfig("clip", 224, 16, None, "linear", 1))
    assert legacy.image_token_len == 196 and legacy.projector_input_size == 32
    naflex = VisionConfig("siglip2", None, 16, 256, "mlp", 2)
    assert naflex.tokens_per_image == 128 and naflex.group == 2
    assert preset("tiny").replace(vision=vision).replace(vision_variant="p16-256").vision.family == "siglip"


def test_a_reference_config_json_round_trips_unchanged():
    import json

    from mmv.config import VLMConfig
    from tests.conftest import REFERENCE

    raw = json.loads((REFERENCE / "p32" / "hf-upstream" / "config.json").read_text())
    written = VLMConfig.from_dict(raw).to_dict()
    assert {k: written[k] for k in raw if k in written} == {k: raw[k] for k in raw if k in written}
    assert written["image_token_len"] == 64 and written["vision_variant"] == "p32-256"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vision_variant": "p16-256", "vision": {"family": "clip", "image_size": 224, "patch_size": 16}}, "is custom"),
        ({"image_token_len": 49}, "image_token_len 49 does not match the p32-256 encoder, ln-mlp projector"),
        ({"vision": {"family": "dinov2", "merge": 3}}, "merge 3 does not divide the 8x8 patch grid"),
        ({"vision": {"family": "clip", "mrege": 2}}, "vision has unknown field 'mrege'"),
        ({"vision": {"family": "vit"}}, "unknown encoder family 'vit'"),
        ({"vision": {"projector": "conv"}}, "unknown projector 'conv'"),
        ({"vision": {"family": "siglip2", "image_size": None}}, "a NaFlex \\(siglip2\\) encoder has max_patches"),
        ({"vision": {"image_size": 250}}, "image_size 250 is not a whole number of 32-pixel patches"),
        ({"vision": {"merge": "2"}}, "merge must be an integer, got '2'"),
        ({"vision": "p32"}, "vision must be an object"),
    ],
)
def test_an_inconsistent_vision_config_is_refused(fields, message):
    from mmv.config import VLMConfig

    with pytest.raises(MmvError, match=message):
        VLMConfig.from_dict(fields)


def test_overlaying_a_recorded_config_replaces_the_vision_path_whole():
    from mmv.config import VisionConfig

    custom = preset("tiny").replace(vision=VisionConfig("clip", 224, 16, None, "linear", 1))
    assert custom.overlay({"vision_variant": "p16-256"}).vision_variant == "p16-256"
    assert custom.overlay({"hidden_size": 64}).vision == custom.vision
    assert preset("tiny").overlay({"vision": custom.to_dict()["vision"]}).image_token_len == 196
