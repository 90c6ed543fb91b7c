"""Issue 2's oracle: the fixture LLM weights in transformers' own Qwen3 classes give the reference's text logits.

MiniMind is the Qwen3 architecture with identical key names, so an independent implementation (transformers)
checks mmv's LLM: dense weights load with strict=True; MoE weights go through from_pretrained, which fuses the
per-expert tensors with transformers' own conversion mapping.
"""

from __future__ import annotations

import json

import torch

from tests.conftest import REFERENCE, fixture_base_config, fixture_cases, load_fixture_model


def qwen3_kwargs(name: str) -> dict:
    raw = json.loads((REFERENCE / name / "vlm_config.json").read_text())
    return dict(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=raw["num_attention_heads"],
        num_key_value_heads=raw["num_key_value_heads"],
        intermediate_size=raw["intermediate_size"],
        head_dim=raw["hidden_size"] // raw["num_attention_heads"],
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    )


def llm_state(name: str) -> dict[str, torch.Tensor]:
    state = torch.load(REFERENCE / name / "model.pth", map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("vision_proj.")}


def test_dense_fixture_in_qwen3_for_causal_lm():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(Qwen3Config(**qwen3_kwargs("p32"))).eval()
    model.load_state_dict(llm_state("p32"), strict=True)  # identical key names
    cases = fixture_cases("p32")
    with torch.no_grad():
        logits = model(cases["text_input_ids"]).logits
        mmv_logits = load_fixture_model("p32")(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, mmv_logits, atol=1e-5, rtol=0)


def test_moe_fixture_in_qwen3_moe_for_causal_lm(tmp_path):
    from safetensors.torch import save_file
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    top_k = fixture_base_config("p32-moe").num_experts_per_tok
    raw = json.loads((REFERENCE / "p32-moe" / "vlm_config.json").read_text())
    config = Qwen3MoeConfig(
        **qwen3_kwargs("p32-moe"),
        num_experts=raw["num_experts"],
        num_experts_per_tok=top_k,
        moe_intermediate_size=raw["intermediate_size"],
        norm_topk_prob=True,
    )
    state = {k: v.contiguous() for k, v in llm_state("p32-moe").items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(tmp_path)
    model = Qwen3MoeForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert model.model.layers[0].mlp.experts.gate_up_proj.shape[0] == raw["num_experts"]  # fused on load
    cases = fixture_cases("p32-moe")
    with torch.no_grad():
        logits = model(cases["text_input_ids"]).logits
        mmv_logits = load_fixture_model("p32-moe")(cases["text_input_ids"]).logits
    torch.testing.assert_close(logits, cases["text_logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, mmv_logits, atol=1e-5, rtol=0)
