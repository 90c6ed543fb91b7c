"""The tiny random encoder folder loads through mmv's normal encoder path as a p32-256 encoder."""

from __future__ import annotations

import dataclasses
import json
import random

import torch

from mmv.model.vision import ImageProcessor, inspect_encoder, load_encoder
from mmv.synth.encoder import TinyEncoderConfig, make_encoder
from mmv.synth.scenes import draw, random_scene


def test_tiny_encoder_is_a_p32_siglip_folder(tmp_path):
    make_encoder(tmp_path / "a", TinyEncoderConfig(hidden_size=32, intermediate_size=64, seed=1))
    info = inspect_encoder(tmp_path / "a")
    assert (info.variant, info.hidden_size) == ("p32-256", 32)
    processor_config = json.loads((tmp_path / "a" / "preprocessor_config.json").read_text())
    assert processor_config["size"] == {"height": 256, "width": 256}
    assert processor_config["image_mean"] == processor_config["image_std"] == [0.5] * 3

    image = draw(dataclasses.replace(random_scene(random.Random(0)), background=(255, 255, 255)))
    pixels = ImageProcessor(tmp_path / "a")([image])
    assert pixels["pixel_values"].shape == (1, 3, 256, 256)
    # a white background maps to exactly 1 after rescale 1/255 and normalisation with mean = std = 0.5
    assert pixels["pixel_values"].max().item() == 1.0
    encoder = load_encoder(tmp_path / "a")
    with torch.no_grad():
        features = encoder(**pixels).last_hidden_state
    assert features.shape == (1, 64, 32)


def test_same_seed_same_weights(tmp_path):
    from safetensors.torch import load_file

    config = TinyEncoderConfig(hidden_size=32, intermediate_size=64, seed=5)
    make_encoder(tmp_path / "a", config)
    make_encoder(tmp_path / "b", config)
    make_encoder(tmp_path / "c", TinyEncoderConfig(hidden_size=32, intermediate_size=64, seed=6))
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_smaller_native_side_makes_fewer_patches(tmp_path):
    """A 128-pixel encoder with an explicit 32-pixel patch: 16 tokens, its processor squeezes any image to 128."""
    make_encoder(tmp_path / "a", TinyEncoderConfig(hidden_size=32, intermediate_size=64, image_size=128, patch_size=32))
    info = inspect_encoder(tmp_path / "a")
    assert (info.variant, info.vision().image_size, info.vision().tokens_per_image) == (None, 128, 16)
    pixels = ImageProcessor(tmp_path / "a")([draw(random_scene(random.Random(0)))])
    assert pixels["pixel_values"].shape == (1, 3, 128, 128)
    with torch.no_grad():
        assert load_encoder(tmp_path / "a")(**pixels).last_hidden_state.shape == (1, 16, 32)


def test_a_128_pixel_encoder_keeps_the_8x8_grid_in_16_pixel_patches_for_every_family(tmp_path):
    import pytest

    from mmv.errors import MmvError
    from mmv.synth.encoder import FAMILIES

    frame = draw(random_scene(random.Random(1)), side=128)
    for family in FAMILIES:
        make_encoder(tmp_path / family, TinyEncoderConfig(hidden_size=32, seed=2, family=family, image_size=128))
        info = inspect_encoder(tmp_path / family)
        assert (info.image_size, info.patch_size, info.num_patches, info.variant) == (128, 16, 64, None)
        pixels = ImageProcessor(tmp_path / family)([frame])
        assert pixels["pixel_values"].shape == (1, 3, 128, 128)
        with torch.no_grad():
            features = load_encoder(tmp_path / family)(**pixels).last_hidden_state
        assert features.shape[-1] == 32 and features.shape[1] in (64, 65, 69)  # + CLS (CLIP), + CLS, 4 registers
    with pytest.raises(MmvError, match="multiple of 8"):
        TinyEncoderConfig(image_size=100)


def test_the_tiny_clip_encoders_pre_layernorm_lets_a_stronger_patch_signal_through(tmp_path):
    """At CLIP's usual epsilon the pre-layernorm hides the patch embedding's scale (the cause of the demo's collapse);
    at the tiny CLIP's, a doubled patch embedding comes out half as strong again (1.5x at epsilon 10)."""
    from transformers import CLIPVisionModel

    from mmv.synth.encoder import CLIP_LAYER_NORM_EPS

    make_encoder(tmp_path / "clip", TinyEncoderConfig(family="clip", seed=3))
    encoder = CLIPVisionModel.from_pretrained(tmp_path / "clip")
    assert encoder.config.layer_norm_eps == CLIP_LAYER_NORM_EPS
    pixels = ImageProcessor(tmp_path / "clip")([draw(random_scene(random.Random(2)))])["pixel_values"]

    def normed_patches(eps: float) -> torch.Tensor:
        encoder.pre_layrnorm.eps = eps
        with torch.no_grad():
            return encoder.pre_layrnorm(encoder.embeddings(pixels))[:, 1:].norm(dim=-1).mean()

    for eps, (low, high) in ((CLIP_LAYER_NORM_EPS, (1.4, 2.0)), (1e-5, (0.99, 1.01))):
        before = normed_patches(eps)
        with torch.no_grad():
            encoder.embeddings.patch_embedding.weight.mul_(2)
        ratio = (normed_patches(eps) / before).item()
        with torch.no_grad():
            encoder.embeddings.patch_embedding.weight.div_(2)
        assert low < ratio < high, (eps, ratio)
