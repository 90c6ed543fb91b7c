"""Every SRC form: a run directory (its recorded config, encoder and tokenizer) and downloaded names."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_base_config, fixture_cases, pixel_inputs


def make_run_dir(tmp_path):
    """A run directory in the trainer's layout: config.json recording everything, a float16 .pth beside it."""
    from mmv import __version__
    from mmv.checkpoint import read_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REFERENCE / "p32-moe" / "model_fp16.pth", run / "sft_vlm.pth")
    model = read_checkpoint(run / "sft_vlm.pth", 32, fixture_base_config("p32-moe")).config.to_dict()
    (run / "config.json").write_text(
        json.dumps(
            {
                "mmv_version": __version__,
                "stage": "sft",
                "model": model,
                "train": {},
                "data": {},
                "vision_dir": str(REFERENCE / "p32-moe" / "vision"),
                "tokenizer_dir": str(TOKENIZER_DIR),
                "weights": "sft_vlm.pth",
            }
        )
    )
    return run


def test_run_directory_supplies_config_encoder_and_tokenizer(tmp_path):
    from mmv.convert import convert
    from mmv.loading import load_model

    result = convert(make_run_dir(tmp_path), "transformers", tmp_path / "tf")  # no flags: the run knows
    assert result.vision == REFERENCE / "p32-moe" / "vision" and result.use_moe
    config = json.loads((tmp_path / "tf" / "config.json").read_text())
    assert config["num_experts_per_tok"] == 2  # from the run's config; a bare .pth would say 1
    loaded = load_model(tmp_path / "tf", device="cpu", dtype="float32")
    cases = fixture_cases("p32-moe")
    with torch.no_grad():
        logits = loaded.model(cases["input_ids"], pixel_inputs=pixel_inputs(cases)).logits
    assert (logits - cases["logits"]).abs().max() < 5e-2  # float16 weights against the float32 reference
    assert torch.equal(logits[0, -1].argmax(), cases["logits"][0, -1].argmax())


def test_downloaded_names_resolve_through_the_cache(tmp_path, monkeypatch):
    from mmv.convert import convert

    home = tmp_path / "home"
    monkeypatch.setenv("MMV_HOME", str(home))
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", home / "minimind-3v")
    (home / "llm").mkdir()
    shutil.copy(REFERENCE / "p32" / "llm.pth", home / "llm" / "llm_768.pth")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, home / "llm" / name)

    result = convert("minimind-3v", "pth", tmp_path / "m.pth", dtype="float32")
    assert result.source == home / "minimind-3v" and result.variant == "p32-256"
    qwen = convert("llm", "qwen3", tmp_path / "q")  # the tokenizer lives in the cached folder itself
    assert qwen.source == home / "llm" / "llm_768.pth" and (tmp_path / "q" / "tokenizer.json").is_file()


def test_unknown_name_says_how_to_download(tmp_path):
    from mmv.convert import convert
    from mmv.errors import MmvError

    with pytest.raises(MmvError, match="mmv download"):
        convert("minimind-3v", "pth", tmp_path / "m.pth")
