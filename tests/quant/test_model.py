"""quantize_model: which layers become int8, what stays float32, and how close the int8 model stays to the reference.

Quality on the four reference fixtures (tiny random models, float32 reference logits), measured on the
development machine (AMD EPYC, AVX2) with the encoder quantized too:

| fixture | logits relative RMS error | max abs error (logits up to ~5.6) | greedy, teacher-forced |
|---|---|---|---|
| p32 | 5.5% (text 8.8%) | 0.40 (text 0.70) | 16/16 |
| p16-merge2x2 | 6.4% (text 8.3%) | 0.44 (text 0.52) | 16/16 |
| naflex-merge4 | 7.8% (text 10.2%) | 0.80 (text 0.82) | 16/16 |
| p32-moe | 9.8% (text 17.4%) | 2.60 (text 2.60: a flipped expert) | 16/16 |

Random tiny models amplify rounding far more than trained ones (their top-2 logit gaps along the greedy reply go
down to 0.01); the bounds below leave room for another CPU's float rounding and still fail a broken scale or
layout, which puts the error near 100%.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from mmv.decoding import left_pad
from mmv.errors import MmvError
from mmv.generate import generate
from mmv.model.fast_decode import FastDecoder
from mmv.model.vision import load_encoder
from mmv.model.vlm import MiniMindVLM
from mmv.quant import check_scheme, is_quantized, quantize_model
from mmv.quant.int8 import Int8Linear
from mmv.sampling import SamplingConfig
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases, load_fixture_model, pixel_inputs

LLM_INT8 = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ENCODER_INT8 = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
DENSE_BOUND, MOE_BOUND = 0.12, 0.25  # relative RMS error of the logits (measured up to 0.10 and 0.17)


def relative_rms(got: torch.Tensor, exact: torch.Tensor) -> float:
    return float((got - exact).norm() / exact.norm())


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_every_matrix_a_step_streams_becomes_int8_and_the_rest_stays_float(name):
    model = load_fixture_model(name)
    embedding = model.model.embed_tokens.weight.detach().clone()
    projector = {k: v.clone() for k, v in model.vision_proj.state_dict().items()}
    assert quantize_model(model, "int8") is model
    assert is_quantized(model) and not model.training
    for block in model.model.layers:
        attention = block.self_attn
        assert all(isinstance(getattr(attention, n), Int8Linear) for n in LLM_INT8[:4])
        ffns = block.mlp.experts if model.config.use_moe else [block.mlp]
        assert all(isinstance(getattr(ffn, n), Int8Linear) for ffn in ffns for n in LLM_INT8[4:])
        if model.config.use_moe:
            assert type(block.mlp.gate) is nn.Linear  # the router stays float32
    assert isinstance(model.lm_head, Int8Linear)
    # the embedding the head was tied to stays float32 and unchanged; so does the projector
    assert model.model.embed_tokens.weight.dtype == torch.float32
    torch.testing.assert_close(model.model.embed_tokens.weight, embedding, rtol=0, atol=0)
    for key, value in model.vision_proj.state_dict().items():
        torch.testing.assert_close(value, projector[key], rtol=0, atol=0)
    for layer in model.vision_encoder.encoder.layers:
        parts = [layer.self_attn] * 4 + [layer.mlp] * 2
        assert all(isinstance(getattr(part, n), Int8Linear) for part, n in zip(parts, ENCODER_INT8, strict=True))
    # the pooling head mmv never runs is gone, and the encoder runs without it
    assert not hasattr(model.vision_encoder, "head") and not model.vision_encoder.use_head
    assert not any(n.startswith("vision_encoder.head.") for n, _ in model.named_parameters())
    assert type(model.vision_encoder.embeddings.patch_embedding) is not Int8Linear
    # no float copy of a quantized matrix is left behind: the LLM keeps only embeddings, norms and routers
    llm_floats = {n for n, _ in model.named_parameters() if not n.startswith(("vision_encoder.", "vision_proj."))}
    assert all(n.endswith(("embed_tokens.weight", "norm.weight", "mlp.gate.weight")) for n in llm_floats)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_the_encoder_file_is_unmapped_once_quantized(tmp_path):
    # transformers maps safetensors files; quantizing reads every page, which would stay resident while any
    # float tensor left in the encoder still pointed into the map
    folder = tmp_path / "vision"
    shutil.copytree(REFERENCE / "p32" / "vision", folder)
    model = MiniMindVLM(load_fixture_model("p32").config, load_encoder(folder)).eval()
    mapped = str(folder / "model.safetensors")
    assert mapped in Path("/proc/self/maps").read_text()
    quantize_model(model)
    assert mapped not in Path("/proc/self/maps").read_text()


def test_loading_in_int8_quantizes_each_block_as_it_is_filled_and_equals_quantizing_after():
    from mmv.loading import load_model

    folder = REFERENCE / "p32"
    where = {"vision": folder / "vision", "tokenizer": TOKENIZER_DIR, "device": "cpu"}
    early = load_model(folder / "model.pth", quantize="int8", **where).model
    late = quantize_model(load_model(folder / "model.pth", **where).model)
    cases = fixture_cases("p32")
    with torch.no_grad():
        pair = [m(cases["input_ids"], image_embeds=m.encode_images(pixel_inputs(cases))).logits for m in (early, late)]
    assert torch.equal(*pair)
    assert all(isinstance(m, Int8Linear) for m in (early.model.layers[-1].mlp.down_proj, early.lm_head))


def test_vision_false_keeps_the_encoder_float32():
    model = quantize_model(load_fixture_model("p32"), vision=False)
    assert isinstance(model.lm_head, Int8Linear)
    assert not any(isinstance(m, Int8Linear) for m in model.vision_encoder.modules())


def test_refusals():
    with pytest.raises(MmvError, match="unknown quantization 'int4'"):
        check_scheme("int4")
    check_scheme(None)
    with pytest.raises(MmvError, match="runs on CPU in float32"):
        quantize_model(load_fixture_model("p32").to(torch.bfloat16))
    model = quantize_model(load_fixture_model("p32"))
    with pytest.raises(MmvError, match="quantized already"):
        quantize_model(model)
    with pytest.raises(MmvError, match="cannot be saved"):
        model.checkpoint_state_dict()


def test_logits_and_greedy_replies_stay_close_to_the_float32_reference(fixture_name):
    model, cases = load_fixture_model(fixture_name), fixture_cases(fixture_name)
    quantize_model(model)
    greedy = cases["generated_greedy"]
    prompt_length = cases["input_ids"].shape[1]
    with torch.no_grad():
        image_embeds = model.encode_images(pixel_inputs(cases))
        logits = model(cases["input_ids"], image_embeds=image_embeds).logits
        text_logits = model(cases["text_input_ids"]).logits
        # greedy agreement, teacher-forced: each step's argmax given the reference reply so far
        replay = model(greedy[:, :-1], image_embeds=image_embeds).logits[0, prompt_length - 1 :].argmax(-1)
    bound = MOE_BOUND if fixture_name.endswith("moe") else DENSE_BOUND
    assert relative_rms(logits, cases["logits"]) < bound
    assert relative_rms(text_logits, cases["text_logits"]) < bound
    assert int((replay == greedy[0, prompt_length:]).sum()) >= 14


def test_generate_decodes_through_the_int8_fast_step():
    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    quantize_model(model)
    assert FastDecoder.supports(model, batch=1)
    prompt = cases["input_ids"][0].tolist()
    sampling = SamplingConfig(max_new_tokens=16, stop_on_eos=False)
    fast = generate(model, [prompt], sampling, pixel_inputs=pixel_inputs(cases))
    modules = generate(model, [prompt], sampling, pixel_inputs=pixel_inputs(cases), fast_decode=False)
    assert fast.tokens == modules.tokens
    # measured: the whole 16-token reference reply (the smallest int8 margin along it is 0.057)
    assert fast.tokens[0] == greedy_reply(cases)


def test_batched_padded_prompts_run_on_the_int8_modules():
    float_model, cases = load_fixture_model("p32-moe"), fixture_cases("p32-moe")
    model = quantize_model(load_fixture_model("p32-moe"))
    text = cases["text_input_ids"][0].tolist()
    prompts = [text, text[:9]]
    result = generate(model, prompts, SamplingConfig(max_new_tokens=6, stop_on_eos=False))
    assert [len(t) for t in result.tokens] == [6, 6]
    # the padded prefill's last logits per row, against float32 (rows of a batch share each product's input
    # scale, so a row need not equal the same prompt run alone, but it stays as close to float32)
    ids, mask = left_pad(prompts, model.config.pad_token_id)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        got, exact = (m(ids, key_padding=mask, position_ids=positions).logits[:, -1] for m in (model, float_model))
    for row in range(2):
        assert relative_rms(got[row], exact[row]) < MOE_BOUND


def greedy_reply(cases: dict) -> list[int]:
    return cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
