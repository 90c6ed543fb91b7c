"""Encoder folders are read as data and checked before anything is allocated."""

from __future__ import annotations

import json
import shutil

import pytest

from mmv.errors import MmvError
from mmv.model.vision import ImageProcessor, inspect_encoder
from tests.conftest import REFERENCE


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
        (lambda c: {**c, "model_type": "clip_vision_model"}, "expected SigLIP or SigLIP2"),
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
