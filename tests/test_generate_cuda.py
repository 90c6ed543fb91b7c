"""Generation on a GPU (`gpu`-marked, skipped without CUDA; tests/gpu.py): the reference fixtures' logits and greedy
tokens on the device, equal to the CPU's, one prompt and a left-padded batch, in float32 and (tokens only) bfloat16
for the prompt's first steps."""

from __future__ import annotations

import pytest
import torch

from mmv.generate import generate
from mmv.sampling import SamplingConfig
from tests.conftest import fixture_cases, load_fixture_model, pixel_inputs

pytestmark = pytest.mark.gpu

GREEDY = SamplingConfig(max_new_tokens=16, stop_on_eos=False)


def on(device: torch.device, name: str) -> tuple[torch.nn.Module, dict, dict]:
    """The fixture model, its cases and its pixel inputs, on `device`."""
    cases = fixture_cases(name)
    pixels = {k: v.to(device) for k, v in pixel_inputs(cases).items()}
    return load_fixture_model(name).to(device), cases, pixels


def test_the_reference_logits_on_the_device(fixture_name, gpu, full_float32):
    model, cases, pixels = on(gpu, fixture_name)
    with torch.no_grad():
        logits = model(cases["input_ids"].to(gpu), pixel_inputs=pixels).logits
    assert logits.device.type == gpu.type
    torch.testing.assert_close(logits.cpu(), cases["logits"], atol=1e-4, rtol=0)


def test_greedy_generation_on_the_device_equals_the_cpu(fixture_name, gpu, full_float32):
    model, cases, pixels = on(gpu, fixture_name)
    prompt = cases["input_ids"][0].tolist()
    on_device = generate(model, [prompt], GREEDY, pixel_inputs=pixels).tokens
    cpu_model, _, cpu_pixels = on(torch.device("cpu"), fixture_name)
    on_cpu = generate(cpu_model, [prompt], GREEDY, pixel_inputs=cpu_pixels).tokens
    assert on_device == on_cpu == [cases["generated_greedy"][0, len(prompt) :].tolist()]


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_a_left_padded_batch_on_the_device_equals_one_by_one(name, gpu, full_float32):
    model, cases, pixels = on(gpu, name)
    image = cases["input_ids"][0].tolist()
    text = cases["text_input_ids"][0].tolist()[:12]
    prompts = [text, image, text[:5], image]
    two_images = {k: torch.cat([v, v]) for k, v in pixels.items()}
    sampling = SamplingConfig(max_new_tokens=10, stop_on_eos=False)
    together = generate(model, prompts, sampling, pixel_inputs=two_images).tokens
    alone = [generate(model, [p], sampling, pixel_inputs=pixels if p is image else None).tokens[0] for p in prompts]
    assert together == alone
    assert together[1] == cases["generated_greedy"][0, len(image) : len(image) + 10].tolist()


def test_bfloat16_generation_on_the_device(gpu):
    """bfloat16 weights (what `mmv chat --dtype bfloat16` runs): the first greedy tokens of the reference, whose
    margins the fixture's random weights leave wide enough for bfloat16's rounding."""
    model, cases, pixels = on(gpu, "p32")
    model = model.to(torch.bfloat16)
    prompt = cases["input_ids"][0].tolist()
    pixels = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in pixels.items()}
    tokens = generate(model, [prompt], SamplingConfig(max_new_tokens=4, stop_on_eos=False), pixel_inputs=pixels)
    assert tokens.tokens == [cases["generated_greedy"][0, len(prompt) : len(prompt) + 4].tolist()]
