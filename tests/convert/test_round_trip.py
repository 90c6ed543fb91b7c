"""pth -> transformers -> pth is bit-identical for the same dtype; the float32 logits are identical across formats."""

from __future__ import annotations

import torch

from tests.conftest import (
    REFERENCE,
    TOKENIZER_DIR,
    fixture_base_config,
    fixture_cases,
    load_fixture_model,
    pixel_inputs,
)


def read(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_identical(found: dict, expected: dict) -> None:
    assert list(found) == list(expected)  # the reference's key order too
    for key, tensor in expected.items():
        assert found[key].dtype == tensor.dtype, key
        assert torch.equal(found[key], tensor), key


def test_float16_round_trip_is_bit_identical(fixture_name, tmp_path):
    from mmv.convert import convert

    original = REFERENCE / fixture_name / "model_fp16.pth"
    base = fixture_base_config(fixture_name)
    folder = convert(original, "transformers", tmp_path / "tf", tokenizer=TOKENIZER_DIR, base=base)
    assert folder.dtype == "float16"  # the source's dtype is kept by default
    back = convert(tmp_path / "tf", "pth", tmp_path / "back.pth")
    assert_identical(read(back.out), read(original))
    direct = convert(original, "pth", tmp_path / "direct.pth", base=base)
    assert (tmp_path / "direct.pth").read_bytes() == (tmp_path / "back.pth").read_bytes()
    assert direct.params == back.params == folder.params


def test_float32_folder_back_to_pth_is_bit_identical(tf_folders, fixture_name, tmp_path):
    from mmv.convert import convert

    convert(tf_folders[fixture_name], "pth", tmp_path / "back.pth", dtype="float32")
    assert_identical(read(tmp_path / "back.pth"), read(REFERENCE / fixture_name / "model.pth"))


def test_float32_logits_identical_across_formats(tf_folders, fixture_name, tmp_path):
    from mmv.checkpoint import load_weights, read_checkpoint
    from mmv.convert import convert
    from mmv.model.vlm import MiniMindVLM

    convert(tf_folders[fixture_name], "pth", tmp_path / "back.pth", dtype="float32")
    original = load_fixture_model(fixture_name)
    cases = fixture_cases(fixture_name)
    with torch.no_grad():
        image_embeds = original.encode_images(pixel_inputs(cases))
        expected = original(cases["input_ids"], image_embeds=image_embeds).logits
    for path in (tf_folders[fixture_name], tmp_path / "back.pth"):
        checkpoint = read_checkpoint(path, original.config.image_hidden_size, fixture_base_config(fixture_name))
        model = MiniMindVLM(checkpoint.config).eval()
        load_weights(model, checkpoint)
        assert model.config == original.config
        with torch.no_grad():
            assert torch.equal(model(cases["input_ids"], image_embeds=image_embeds).logits, expected), path


def test_text_only_llm_converts_to_pth_only(tmp_path):
    import pytest

    from mmv.convert import convert
    from mmv.errors import MmvError

    llm = REFERENCE / "p32" / "llm.pth"
    result = convert(llm, "pth", tmp_path / "llm.pth", dtype="float32")
    assert result.variant is None
    assert_identical(read(tmp_path / "llm.pth"), read(llm))
    with pytest.raises(MmvError, match="text-only LLM"):
        convert(llm, "transformers", tmp_path / "tf", tokenizer=TOKENIZER_DIR)
    assert not (tmp_path / "tf").exists()


def test_reference_transformers_folder_converts_without_running_its_code(tmp_path):
    """The reference converter's own folder (its modeling .py files removed in the fixture) reads as data."""
    from mmv.convert import convert

    upstream = REFERENCE / "p32" / "hf-upstream"
    convert(upstream, "pth", tmp_path / "model.pth", dtype="float32")
    assert_identical(read(tmp_path / "model.pth"), read(REFERENCE / "p32" / "model.pth"))
    result = convert(upstream, "transformers", tmp_path / "tf")  # its own tokenizer files travel along
    assert result.vision is None and (tmp_path / "tf" / "tokenizer.json").is_file()


def test_bare_safetensors_file_converts(tf_folders, tmp_path):
    """A lone .safetensors (tied lm_head stored once, no config) reads like a .pth: sizes from the tensors."""
    from mmv.convert import convert

    convert(tf_folders["p32"] / "model.safetensors", "pth", tmp_path / "m.pth", dtype="float32")
    assert_identical(read(tmp_path / "m.pth"), read(REFERENCE / "p32" / "model.pth"))
