"""Resolving a model reference and its encoder and tokenizer."""

from __future__ import annotations

import shutil

import pytest

from mmv.errors import MmvError
from mmv.loading import load_model, resolve_model
from tests.conftest import REFERENCE, TOKENIZER_DIR


def copy_tokenizer(folder):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, folder / name)


def test_folder_with_one_checkpoint_and_tokenizer(tmp_path):
    """The cached `llm` layout: llm_768.pth beside the tokenizer files, no config.json."""
    shutil.copy(REFERENCE / "p32" / "llm.pth", tmp_path / "llm_768.pth")
    copy_tokenizer(tmp_path)
    loaded = load_model(tmp_path, vision=REFERENCE / "p32" / "vision")
    assert loaded.weights.name == "llm_768.pth" and loaded.tokenizer_dir == tmp_path
    assert any("text-only" in note for note in loaded.notes)
    assert loaded.model.config.vision_variant == "p32-256"


def test_folder_with_several_checkpoints_asks_for_a_file(tmp_path):
    for name in ("a.pth", "b.pth"):
        shutil.copy(REFERENCE / "p32" / "llm.pth", tmp_path / name)
    with pytest.raises(MmvError, match=r"2 checkpoint files \(a.pth, b.pth\)"):
        resolve_model(tmp_path)


def test_encoder_beside_the_model_is_found(tmp_path):
    shutil.copy(REFERENCE / "naflex-merge4" / "model.pth", tmp_path / "model.pth")
    shutil.copytree(REFERENCE / "naflex-merge4" / "vision", tmp_path / "vision")
    loaded = load_model(tmp_path / "model.pth", tokenizer=TOKENIZER_DIR)
    assert loaded.model.config.vision_variant == "p16-naflex" and loaded.processor.variant == "p16-naflex"


def test_cached_names_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", tmp_path / "minimind-3v")
    shutil.copytree(REFERENCE / "p32" / "vision", tmp_path / "siglip2-p32-256")
    loaded = load_model("minimind-3v")
    assert loaded.vision_dir == tmp_path / "siglip2-p32-256"
    assert loaded.tokenizer_dir == tmp_path / "minimind-3v"


def test_missing_encoder_names_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    with pytest.raises(MmvError, match="mmv download siglip2-p32-256"):
        load_model(REFERENCE / "p32" / "hf-upstream")


def test_missing_tokenizer_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    with pytest.raises(MmvError, match=r"no tokenizer found.*mmv download llm") as failure:
        load_model(REFERENCE / "p32" / "model.pth", vision=REFERENCE / "p32" / "vision")
    assert failure.value.options == ("tokenizer",) and "--" not in str(failure.value)


def test_text_only_chat_needs_no_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path))
    loaded = load_model(REFERENCE / "p32" / "hf-upstream", need_vision=False)
    assert loaded.model.vision_encoder is None and loaded.processor is None
