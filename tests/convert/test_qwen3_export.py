"""`--to qwen3`: native Qwen3 / Qwen3-MoE folders (no remote code) that match mmv's text logits."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_base_config, fixture_cases, load_fixture_model
from tests.convert.conftest import greedy

YARN = {
    "type": "yarn",
    "factor": 16,
    "original_max_position_embeddings": 2048,
    "beta_fast": 32,
    "beta_slow": 1,
    "attention_factor": 1.0,
}


def load_native(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # no trust_remote_code


@pytest.mark.parametrize(("name", "cls"), [("p32", "Qwen3ForCausalLM"), ("p32-moe", "Qwen3MoeForCausalLM")])
def test_qwen3_folder_matches_mmv(name, cls, tmp_path):
    from transformers import AutoTokenizer

    from mmv.convert import convert
    from mmv.tokenizer import encode, load_tokenizer, render_chat

    result = convert(
        REFERENCE / name / "model.pth", "qwen3", tmp_path / "q", tokenizer=TOKENIZER_DIR, base=fixture_base_config(name)
    )
    assert result.variant is None and not list((tmp_path / "q").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "q" / "config.json").read_text())
    native = load_native(tmp_path / "q")
    assert type(native).__name__ == cls
    mmv_model, cases = load_fixture_model(name), fixture_cases(name)
    ids = cases["text_input_ids"]
    with torch.no_grad():
        logits = native(ids).logits
        expected = mmv_model(ids).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)  # the reference's own logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        generated = native.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generated, greedy(mmv_model, ids, 8))
    tokenizer, original = AutoTokenizer.from_pretrained(tmp_path / "q"), load_tokenizer(TOKENIZER_DIR)
    messages = [{"role": "user", "content": "hi"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(original, messages)
    assert tokenizer(rendered, add_special_tokens=False).input_ids == encode(original, rendered)


def test_yarn_rope_scaling_carries_over(tmp_path):
    from mmv.checkpoint import load_weights, read_checkpoint
    from mmv.config import VLMConfig
    from mmv.convert import convert
    from mmv.model.vlm import MiniMindVLM

    base = VLMConfig(rope_scaling=YARN)
    convert(REFERENCE / "p32" / "llm.pth", "qwen3", tmp_path / "q", tokenizer=TOKENIZER_DIR, base=base)
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "yarn"
    checkpoint = read_checkpoint(REFERENCE / "p32" / "llm.pth", base=base)
    model = MiniMindVLM(checkpoint.config).eval()
    load_weights(model, checkpoint)
    ids = fixture_cases("p32")["text_input_ids"]
    with torch.no_grad():
        expected, logits = model(ids).logits, load_native(tmp_path / "q")(ids).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert (expected - fixture_cases("p32")["text_logits"]).abs().max() > 1e-3  # YaRN did change the model
