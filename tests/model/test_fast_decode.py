"""FastDecoder computes what the module path computes, step by step, and generate uses it where it applies."""

from __future__ import annotations

import pytest
import torch

from mmv.config import preset
from mmv.generate import generate
from mmv.model.fast_decode import FastDecoder
from mmv.model.vlm import MiniMindVLM
from mmv.quant import quantize_model
from mmv.sampling import SamplingConfig
from tests.conftest import fixture_cases, load_fixture_model, pixel_inputs

YARN = {
    "type": "yarn",
    "factor": 16,
    "original_max_position_embeddings": 2048,
    "beta_fast": 32,
    "beta_slow": 1,
    "attention_factor": 1.2,
}


def random_model(**overrides) -> MiniMindVLM:
    torch.manual_seed(0)
    model = MiniMindVLM(preset("tiny", **overrides)).eval()
    model.init_fresh_weights(std=0.1)
    with torch.no_grad():  # norm weights start as ones, which would hide a misplaced norm scale
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_key_value_heads": 4},  # plain multi-head attention
        {"num_key_value_heads": 1, "head_dim": 32},  # one kv head; q/k/v width differs from hidden
        {"rope_scaling": YARN},
        {"tie_word_embeddings": False},
        {"use_moe": True, "num_experts": 4, "num_experts_per_tok": 2},
        {
            "use_moe": True,
            "num_experts": 3,
            "num_experts_per_tok": 1,
            "norm_topk_prob": False,
            "moe_intermediate_size": 96,
        },
    ],
    ids=["gqa", "mha", "mqa-wide-heads", "yarn", "untied", "moe-top2", "moe-top1-unnormalised"],
)
def test_every_step_equals_the_module_path(overrides):
    assert_steps_equal_the_module_path(random_model(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"tie_word_embeddings": False}, {"use_moe": True, "num_experts": 4, "num_experts_per_tok": 2}],
    ids=["gqa", "untied", "moe-top2"],
)
def test_an_int8_model_steps_through_its_own_kernel_as_its_modules_do(overrides):
    # the norm's scale goes in after the int8 product here, before it through the modules: the same to float
    # rounding, since the kernel quantizes its input per tensor (scale-invariant)
    assert_steps_equal_the_module_path(quantize_model(random_model(**overrides)))


def assert_steps_equal_the_module_path(model: MiniMindVLM) -> None:
    prompt = torch.randint(3, model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    fed = torch.randint(3, model.config.vocab_size, (12,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.inference_mode():
        module_cache = model.new_cache(1, 9 + len(fed), torch.float32, "cpu")
        fast_cache = model.new_cache(1, 9 + len(fed), torch.float32, "cpu")
        model(prompt, cache=module_cache)
        model(prompt, cache=fast_cache)
        fast = FastDecoder(model, fast_cache)
        for token in fed:
            expected = model(torch.tensor([[token]]), cache=module_cache).logits[:, -1]
            torch.testing.assert_close(fast(token), expected, atol=2e-5, rtol=1e-5)
    assert fast_cache.length == module_cache.length == 9 + len(fed)
    for layer in range(model.config.num_hidden_layers):
        torch.testing.assert_close(fast_cache.keys[layer], module_cache.keys[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast_cache.values[layer], module_cache.values[layer], atol=1e-5, rtol=1e-5)


def test_a_full_cache_is_refused():
    model = random_model()
    with torch.inference_mode():
        cache = model.new_cache(1, 4, torch.float32, "cpu")
        model(torch.tensor([[5, 6, 7, 8]]), cache=cache)
        with pytest.raises(ValueError, match="holds 4 tokens"):
            FastDecoder(model, cache)(9)


def test_applies_to_one_float32_sequence_on_cpu_only():
    dense = random_model()
    assert FastDecoder.supports(dense, batch=1)
    assert FastDecoder.supports(MiniMindVLM(preset("tiny-moe")), batch=1)
    assert not FastDecoder.supports(dense, batch=2)
    assert not FastDecoder.supports(random_model().to(torch.bfloat16), batch=1)


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_generate_decodes_through_it_and_replies_as_the_module_path(monkeypatch, name):
    model, cases = load_fixture_model(name), fixture_cases(name)
    prompt = cases["input_ids"][0].tolist()
    calls = []
    original = FastDecoder.__call__
    monkeypatch.setattr(FastDecoder, "__call__", lambda self, token: calls.append(token) or original(self, token))
    for sampling in [
        SamplingConfig(max_new_tokens=24, stop_on_eos=False),
        SamplingConfig(
            max_new_tokens=24, stop_on_eos=False, temperature=0.9, top_p=0.9, top_k=20, repetition_penalty=1.3, seed=7
        ),
    ]:
        fast = generate(model, [prompt], sampling, pixel_inputs=pixel_inputs(cases))
        module = generate(model, [prompt], sampling, pixel_inputs=pixel_inputs(cases), fast_decode=False)
        assert fast.tokens == module.tokens
    assert len(calls) == 2 * 23  # every token after the first came from the fast step
