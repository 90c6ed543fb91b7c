"""The prefill and decode step as building blocks: driven by hand they give what `generate` gives."""

from __future__ import annotations

import torch

from mmv.decoding import left_pad, prefill
from mmv.generate import generate
from mmv.sampling import SamplingConfig
from tests.conftest import fixture_cases, load_fixture_model, one_thread


def greedy_by_hand(model, prompts, steps, **kwargs):
    decoding = prefill(model, prompts, steps, **kwargs)
    chosen, tokens = decoding.logits.argmax(-1), []
    for _ in range(steps):
        tokens.append(chosen.tolist())
        chosen = decoding.step(chosen).argmax(-1)
    return [list(row) for row in zip(*tokens, strict=True)]


def test_left_pad_aligns_prompts_to_the_right():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_steps_by_hand_equal_generate_on_the_reference_fixture():
    model = load_fixture_model("p32")
    cases = fixture_cases("p32")
    prompt = cases["input_ids"][0].tolist()
    with torch.no_grad(), one_thread():
        embeds = model.encode_images({"pixel_values": cases["pixel.pixel_values"]})
        by_hand = greedy_by_hand(model, [prompt], 16, image_embeds=embeds)
        looped = generate(model, [prompt], SamplingConfig(max_new_tokens=16, stop_on_eos=False), image_embeds=embeds)
    assert by_hand == looped.tokens
    assert by_hand[0] == cases["generated_greedy"][0, len(prompt) :].tolist()


def test_padded_batch_steps_equal_each_prompt_alone():
    model = load_fixture_model("p32")
    prompts = [[1, 832, 311, 234, 107, 108, 2], [1, 1388, 570]]
    with torch.no_grad(), one_thread():
        batch = greedy_by_hand(model, prompts, 8, fast_decode=False)
        alone = [greedy_by_hand(model, [p], 8)[0] for p in prompts]
    assert batch == alone
