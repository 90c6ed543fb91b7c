"""Encoder folders are read as data and checked before anything is allocated."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmv.errors import MmvError
from mmv.model.vision import ImageProcessor, inspect_encoder, load_encoder
from tests.conftest import REFERENCE, SHARED


def encoder_copy(tmp_path, fixture: str = "p32"):
    folder = tmp_path / "vision"
    shutil.copytree(REFERENCE / fixture / "vision", folder)
    return folder


def edit(path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_sizes_are_read_off_the_config():
    info = inspect_encoder(REFERENCE / "p32" / "vision")
    assert (info.variant, info.hidden_size, info.image_size, info.patch_size, info.num_patches) == (
        "p32-256",
        32,
        256,
        32,
        64,
    )
    assert inspect_encoder(REFERENCE / "naflex-merge4" / "vision").num_patches == 256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: [c], "holds a list, expected a JSON object"),
        (lambda c: {**c, "hidden_size": "32"}, "hidden_size must be a positive integer, got '32'"),
        (lambda c: {**c, "patch_size": 0}, "patch_size must be a positive integer, got 0"),
        (lambda c: {**c, "model_type": "vit"}, "holds a vit encoder; expected CLIP, SigLIP, SigLIP2 or DINOv2"),
    ],
)
def test_bad_encoder_configs_are_refused(tmp_path, change, message):
    folder = encoder_copy(tmp_path)
    edit(folder / "config.json", change)
    with pytest.raises(MmvError, match=message):
        inspect_encoder(folder)


@pytest.mark.parametrize(
    ("fixture", "change", "message"),
    [
        ("p32", lambda c: {**c, "size": {"height": 10**6, "width": 10**6}}, "does not match the encoder's 256x256"),
        ("p32", lambda c: {**c, "size": [256, 256]}, "does not match the encoder's 256x256"),
        ("naflex-merge4", lambda c: {**c, "max_num_patches": 10**9}, "do not fit the encoder"),
        ("naflex-merge4", lambda c: {**c, "patch_size": 8}, "do not fit the encoder"),
        ("p32", lambda c: "256", "holds a string, expected a JSON object"),
    ],
)
def test_a_processor_the_encoder_cannot_take_is_refused_before_allocating(tmp_path, fixture, change, message):
    folder = encoder_copy(tmp_path, fixture)
    edit(folder / "preprocessor_config.json", change)
    with pytest.raises(MmvError, match=message) as failure:
        ImageProcessor(folder)
    assert "preprocessor_config.json" in str(failure.value)


LEGACY_VISION = SHARED / "fixtures" / "legacy" / "minimind2-v-2510" / "vision"


@pytest.mark.parametrize(
    ("family", "config_class"),
    [
        ("clip", "CLIPVisionConfig"),
        ("siglip", "SiglipVisionConfig"),
        ("siglip2", "Siglip2VisionConfig"),
        ("dinov2", "Dinov2Config"),
    ],
)
def test_defaults_for_missing_sizes_are_transformers_own(family, config_class):
    import transformers

    from mmv.model.vision import CONFIG_DEFAULTS

    defaults = getattr(transformers, config_class)()
    assert CONFIG_DEFAULTS[family] == {name: getattr(defaults, name) for name in CONFIG_DEFAULTS[family]}


def test_a_whole_clip_model_is_read_as_its_vision_tower(capfd):
    """The CLIP-era encoder (a two-tower CLIPModel): its sizes, its processor's exact pixels, and a quiet load."""
    from PIL import Image
    from safetensors.torch import load_file

    info = inspect_encoder(LEGACY_VISION)
    assert (info.family, info.model_type, info.hidden_size, info.image_size, info.patch_size) == (
        "clip",
        "clip",
        32,
        224,
        16,
    )
    assert info.variant is None and info.label == "clip 224px/16" and info.num_patches == 196
    cases = load_file(str(LEGACY_VISION.parent / "cases.safetensors"))
    pixels = ImageProcessor(LEGACY_VISION)([Image.open(LEGACY_VISION.parent / "image.png")])
    assert torch.equal(pixels["pixel_values"], cases["pixel_values"])
    capfd.readouterr()
    encoder = load_encoder(LEGACY_VISION)
    assert type(encoder).__name__ == "CLIPVisionModel"
    assert capfd.readouterr() == ("", "")  # the text tower's unused weights are not reported


def test_dinov2_images_are_the_processor_crop_not_the_config_size(tmp_path):
    from tests.encoder_folders import make_encoder_folder

    folder = make_encoder_folder(tmp_path / "dino", "dinov2-registers", side=112, patch=14)
    assert json.loads((folder / "config.json").read_text())["image_size"] == 518
    info = inspect_encoder(folder)
    assert (info.family, info.image_size, info.patch_size, info.num_patches) == ("dinov2", 112, 14, 64)


def test_a_fresh_projector_follows_the_reference_variant_of_the_geometry(tmp_path):
    from tests.encoder_folders import make_encoder_folder

    p16 = inspect_encoder(REFERENCE / "p16-merge2x2" / "vision")
    assert (p16.vision().projector, p16.vision().merge, p16.vision().tokens_per_image) == ("ln-mlp", 2, 64)
    assert p16.vision(merge=4).tokens_per_image == 16 and p16.vision("linear").merge == 2
    naflex = inspect_encoder(REFERENCE / "naflex-merge4" / "vision").vision()
    assert (naflex.projector, naflex.merge, naflex.tokens_per_image) == ("mlp", 4, 64)
    clip = inspect_encoder(make_encoder_folder(tmp_path / "clip", "clip", side=64, patch=16)).vision()
    assert (clip.projector, clip.merge, clip.tokens_per_image) == ("ln-mlp", 1, 16)
    with pytest.raises(MmvError, match="merge 3 does not divide the 4x4 patch grid"):
        inspect_encoder(tmp_path / "clip").vision(merge=3)


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("clip", lambda c: {**c, "crop_size": {"height": 96, "width": 96}}, "crop_size 96 does not match the enc"),
        ("clip", lambda c: {**c, "do_center_crop": False}, "do_center_crop must be true"),
        ("dinov2", lambda c: {**c, "crop_size": {"height": 56, "width": 60}}, "is not a square size"),
        ("dinov2", lambda c: {**c, "crop_size": 50}, "crop_size 50 is not a whole number of the encoder's 14-pixel"),
    ],
)
def test_a_crop_the_encoder_cannot_take_is_refused(tmp_path, kind, change, message):
    from tests.encoder_folders import make_encoder_folder

    side, patch = (56, 14) if kind == "dinov2" else (64, 16)
    folder = make_encoder_folder(tmp_path / kind, kind, side=side, patch=patch)
    edit(folder / "preprocessor_config.json", change)
    with pytest.raises(MmvError, match=message):
        inspect_encoder(folder)


def test_an_encoder_folder_needs_its_processor_config(tmp_path):
    folder = encoder_copy(tmp_path)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(MmvError, match=r"preprocessor_config.json does not exist"):
        inspect_encoder(folder)


def test_an_encoder_missing_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = encoder_copy(tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["encoder.layers.0.mlp.fc1.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MmvError, match=r"lacks 1 weight\(s\) such as \S*encoder.layers.0.mlp.fc1.weight"):
        load_encoder(folder)


@pytest.mark.parametrize("fixture", ["p32", "naflex-merge4"])
def test_the_pooling_head_is_skipped_and_the_patch_tokens_are_unchanged(fixture):
    from mmv.model.encoders import patch_features

    encoder = load_encoder(REFERENCE / fixture / "vision")
    heads = [m for m in encoder.modules() if hasattr(m, "use_head")]
    assert heads and not any(m.use_head for m in heads)  # SigLIP's and SigLIP2's towers both have one
    assert all(isinstance(m.head, torch.nn.Module) for m in heads)  # its weights stay: state dicts are unchanged
    processor = ImageProcessor(REFERENCE / fixture / "vision")
    from PIL import Image

    inputs = processor([Image.open(sorted((SHARED / "images").glob("*.jpg"))[0]).convert("RGB")])
    with torch.inference_mode():
        skipped = patch_features(encoder, inputs)
        for module in heads:
            module.use_head = True
        torch.testing.assert_close(patch_features(encoder, inputs), skipped, rtol=0, atol=0)
