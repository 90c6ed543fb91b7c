"""Which encoder outputs feed the projector: every family's patch tokens, class and register tokens dropped."""

from __future__ import annotations

import pytest
import torch

from mmv.model.encoders import ENCODER_TYPES, leading_tokens, patch_features
from mmv.model.vision import ImageProcessor, inspect_encoder, load_encoder
from tests.encoder_folders import KINDS, make_encoder_folder

# kind -> (tokens in front of the patches, patches per image) at 64 px in 16-pixel patches (DINOv2: 14-pixel
# patches of a 56 px crop; NaFlex: up to 64 patches, a square image takes 8x8)
EXPECTED = {
    "clip": (1, 16),
    "clip-full": (1, 16),
    "siglip": (0, 16),
    "siglip2": (0, 64),
    "dinov2": (1, 16),
    "dinov2-registers": (5, 16),
}


@pytest.mark.parametrize("kind", KINDS)
def test_patch_features_are_the_last_hidden_state_without_leading_tokens(tmp_path, kind):
    from PIL import Image

    side, patch = (56, 14) if kind.startswith("dinov2") else (64, 16)
    folder = make_encoder_folder(tmp_path / kind, kind, side=side, patch=patch)
    encoder = load_encoder(folder)
    pixels = ImageProcessor(folder)([Image.new("RGB", (100, 100), (200, 30, 60))])
    lead, patches = EXPECTED[kind]
    with torch.no_grad():
        hidden = encoder(**pixels).last_hidden_state
        features = patch_features(encoder, pixels)
    assert leading_tokens(encoder.config) == lead
    assert hidden.shape[1] == lead + patches and features.shape == (1, patches, 32)
    assert torch.equal(features, hidden[:, lead:])
    assert inspect_encoder(folder).num_patches == patches


def test_every_model_type_names_a_transformers_class():
    import transformers

    for model_type, (family, name) in ENCODER_TYPES.items():
        assert family in ("clip", "siglip", "siglip2", "dinov2"), model_type
        assert issubclass(getattr(transformers, name), transformers.PreTrainedModel), name


def test_the_clip_era_image_side_is_clip_linear_without_merge():
    """MiniMind2-V's image side (a CLIPModel, `last_hidden_state[:, 1:]` without post-layernorm, one Linear over
    196 tokens) is the vision config clip + linear + merge 1: it gives that era's golden features and projection."""
    from safetensors.torch import load_file

    from mmv.config import preset
    from mmv.model.vlm import MiniMindVLM
    from tests.conftest import SHARED

    legacy = SHARED / "fixtures" / "legacy" / "minimind2-v-2510"
    vision = inspect_encoder(legacy / "vision").vision("linear", 1)
    assert (vision.family, vision.tokens_per_image) == ("clip", 196)
    model = MiniMindVLM(preset("tiny").replace(vision=vision), load_encoder(legacy / "vision")).eval()
    state = torch.load(legacy / "model.pth", map_location="cpu", weights_only=True)
    model.vision_proj.load_state_dict(
        {f"mlp.0.{name}": state[f"vision_proj.vision_proj.0.{name}"] for name in ("weight", "bias")}
    )
    cases = load_file(str(legacy / "cases.safetensors"))
    with torch.no_grad():
        features = model.image_features({"pixel_values": cases["pixel_values"]})
        projected = model.project_images(features)
    torch.testing.assert_close(features[0], cases["vision_features"], atol=1e-5, rtol=0)
    torch.testing.assert_close(projected[0], cases["projected"], atol=1e-5, rtol=0)
