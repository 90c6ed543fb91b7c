"""Generation: the reference's greedy tokens, cache == full forward, batching, sampling controls."""

from __future__ import annotations

import pytest
import torch

from mmv.generate import generate
from mmv.sampling import SamplingConfig, apply_repetition_penalty, choose_tokens
from tests.conftest import fixture_cases, load_fixture_model, pixel_inputs


def test_greedy_tokens_match_reference(fixture_name):
    model, cases = load_fixture_model(fixture_name), fixture_cases(fixture_name)
    prompt = cases["input_ids"][0].tolist()
    result = generate(
        model, [prompt], SamplingConfig(max_new_tokens=16, stop_on_eos=False), pixel_inputs=pixel_inputs(cases)
    )
    assert result.tokens[0] == cases["generated_greedy"][0, len(prompt) :].tolist()


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_incremental_decode_equals_full_forward(name):
    model, cases = load_fixture_model(name), fixture_cases(name)
    ids = cases["generated_greedy"]
    prompt_len = cases["input_ids"].shape[1]
    with torch.no_grad():
        embeds = model.encode_images(pixel_inputs(cases))
        full = model(ids, image_embeds=embeds).logits
        cache = model.new_cache(1, ids.shape[1], torch.float32, "cpu")
        steps = [model(ids[:, :prompt_len], image_embeds=embeds, cache=cache).logits]
        for position in range(prompt_len, ids.shape[1]):
            steps.append(model(ids[:, position : position + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_batched_left_padding_equals_one_by_one():
    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    image_prompt = cases["input_ids"][0].tolist()
    text_prompt = cases["text_input_ids"][0].tolist()[:12]
    sampling = SamplingConfig(max_new_tokens=10, stop_on_eos=False)
    together = generate(model, [text_prompt, image_prompt, text_prompt[:5]], sampling, pixel_inputs=pixel_inputs(cases))
    alone = [
        generate(model, [text_prompt], sampling).tokens[0],
        generate(model, [image_prompt], sampling, pixel_inputs=pixel_inputs(cases)).tokens[0],
        generate(model, [text_prompt[:5]], sampling).tokens[0],
    ]
    assert together.tokens == alone


def test_adjacent_images_stay_separate_runs():
    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    pixels = pixel_inputs(cases)
    two = {k: torch.cat([v, v.flip(-1)]) for k, v in pixels.items()}
    ids = torch.tensor([[1] + [12] * 128 + [2]])
    with torch.no_grad():
        embeds = model.encode_images(two)
        hidden = model.embed(ids, embeds)
    torch.testing.assert_close(hidden[0, 1:65], embeds[0])
    torch.testing.assert_close(hidden[0, 65:129], embeds[1])
    assert not torch.allclose(embeds[0], embeds[1])


def test_placeholder_count_mismatch_is_refused():
    from mmv.errors import MmvError

    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    with pytest.raises(MmvError, match="placeholder"), torch.no_grad():
        model(cases["input_ids"][:, :50], pixel_inputs=pixel_inputs(cases))


def test_eos_stops_and_is_not_part_of_reply():
    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    prompt = cases["input_ids"][0].tolist()
    first = cases["generated_greedy"][0, len(prompt)].item()
    model.config.eos_token_id = first  # make the first greedy token the end of the reply
    try:
        result = generate(model, [prompt], SamplingConfig(max_new_tokens=8), pixel_inputs=pixel_inputs(cases))
    finally:
        model.config.eos_token_id = 2
    assert result.tokens == [[]] and result.stopped == ["eos"]


def test_seeded_sampling_is_reproducible_and_varies_with_seed():
    model = load_fixture_model("p32")
    prompt = fixture_cases("p32")["text_input_ids"][0].tolist()

    def run(seed):
        sampling = SamplingConfig(
            max_new_tokens=12, temperature=1.5, top_k=200, top_p=0.95, seed=seed, stop_on_eos=False
        )
        return generate(model, [prompt], sampling).tokens[0]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_top_k_one_is_greedy():
    logits = torch.randn(4, 50)
    sampling = SamplingConfig(temperature=1.0, top_k=1)
    assert torch.equal(choose_tokens(logits, sampling, torch.Generator().manual_seed(0)), logits.argmax(-1))


def test_top_p_keeps_the_nucleus_only():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    sampling = SamplingConfig(temperature=1.0, top_p=0.8)
    picks = {choose_tokens(logits, sampling, torch.Generator().manual_seed(s)).item() for s in range(200)}
    assert picks == {0, 1}


def test_repetition_penalty_is_sign_aware():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_callback_can_cancel():
    model = load_fixture_model("p32")
    prompt = fixture_cases("p32")["text_input_ids"][0].tolist()
    seen = []
    result = generate(
        model,
        [prompt],
        SamplingConfig(max_new_tokens=50, stop_on_eos=False),
        on_token=lambda row, token: seen.append(token) or len(seen) >= 3,
    )
    assert len(result.tokens[0]) == 3 and result.stopped == ["cancelled"]
