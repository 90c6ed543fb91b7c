"""PatchProduct computes its convolution; the int8 model's encoders take it, float models keep the convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmv.quant.patches import PatchProduct, swap_patch_convolutions, tiles_the_image


@pytest.mark.parametrize(
    ("patch", "size", "bias"),
    [(32, (256, 256), True), (16, (224, 160), False), (14, (229, 231), True), ((4, 8), (32, 40), True)],
)
def test_the_product_equals_the_convolution(patch, size, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 24, kernel_size=patch, stride=patch, bias=bias)
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        expected, got = conv(x), PatchProduct(conv)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_only_convolutions_that_tile_the_image_are_taken():
    assert tiles_the_image(nn.Conv2d(3, 8, 16, stride=16))
    assert not tiles_the_image(nn.Conv2d(3, 8, 16, stride=8))  # overlapping patches
    assert not tiles_the_image(nn.Conv2d(3, 8, 16, stride=16, padding=2))
    assert not tiles_the_image(nn.Conv2d(4, 8, 16, stride=16, groups=2))
    assert not tiles_the_image(nn.Linear(3, 8))
    stem = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Conv2d(8, 8, 3, stride=1))
    assert swap_patch_convolutions(stem) == 1
    assert isinstance(stem[0], PatchProduct) and isinstance(stem[1], nn.Conv2d)
    assert list(stem.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


@pytest.mark.parametrize("fixture", ["p32", "p16-merge2x2"])
def test_the_int8_encoder_takes_it_and_gives_the_float_encoders_patch_tokens(fixture):
    from mmv.model.encoders import patch_features
    from mmv.quant import quantize_model
    from tests.conftest import load_fixture_model

    model = load_fixture_model(fixture)
    pixels = {"pixel_values": torch.randn(2, 3, 256, 256)}
    with torch.inference_mode():
        embeddings = model.vision_encoder.embeddings
        before = embeddings.patch_embedding(pixels["pixel_values"])
        quantize_model(model)
        assert isinstance(embeddings.patch_embedding, PatchProduct)
        torch.testing.assert_close(embeddings.patch_embedding(pixels["pixel_values"]), before, atol=2e-5, rtol=1e-5)
        assert patch_features(model.vision_encoder, pixels).isfinite().all()
