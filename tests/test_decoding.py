"""The prefill and decode step as building blocks: driven by hand they give what `generate` gives."""

from __future__ import annotations

import torch

from mmv.decoding import left_pad, prefill, regroup
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


def test_regrouped_rows_decode_as_each_prompt_alone():
    """Rows join a running batch, leave it, and grow it; each row's tokens stay those of its prompt decoded alone."""
    model = load_fixture_model("p32")
    prompts = [[1, 832, 311, 234, 107, 108, 2], [1, 1388, 570], [1, 500, 501, 502, 503, 504, 505, 506, 507, 508]]
    with torch.no_grad(), one_thread():
        alone = [greedy_by_hand(model, [p], 12)[0] for p in prompts]
        first = prefill(model, [prompts[0]], 0, fast_decode=False)
        tokens = {0: list(prompts[0])}
        chosen = {0: [int(first.logits[0].argmax())]}
        running, order = regroup(model, [(first, 0, tokens[0])], room=3), [0]
        for step in range(11):
            if step == 2:  # a longer prompt joins: the running row moves right
                joining = prefill(model, [prompts[2]], 0, fast_decode=False)
                tokens[2], chosen[2] = list(prompts[2]), [int(joining.logits[0].argmax())]
                running = regroup(model, [(running, 0, tokens[0]), (joining, 0, tokens[2])], room=2)
                order = [0, 2]
            if step == 4:  # a shorter one joins
                joining = prefill(model, [prompts[1]], 0, fast_decode=False)
                tokens[1], chosen[1] = list(prompts[1]), [int(joining.logits[0].argmax())]
                rows = [(running, i, tokens[r]) for i, r in enumerate(order)]
                running, order = regroup(model, [*rows, (joining, 0, tokens[1])], room=4), [*order, 1]
            if step == 7:  # the first row leaves; the others are compacted to the left
                running = regroup(model, [(running, i, tokens[r]) for i, r in enumerate(order) if r != 0], room=1)
                order = [r for r in order if r != 0]
            if running.cache.length == running.cache.max_len:  # full: grow
                running = regroup(model, [(running, i, tokens[r]) for i, r in enumerate(order)], room=3)
            fed = torch.tensor([chosen[r][-1] for r in order])
            logits = running.step(fed)
            for i, r in enumerate(order):
                tokens[r].append(chosen[r][-1])
                chosen[r].append(int(logits[i].argmax()))
        assert running.fast is None and len(order) == 2
    assert chosen[0] == alone[0][: len(chosen[0])] and len(chosen[0]) == 8
    assert chosen[1] == alone[1][: len(chosen[1])] and len(chosen[1]) == 8
    assert chosen[2] == alone[2][: len(chosen[2])] and len(chosen[2]) == 10


def test_a_single_regrouped_row_steps_through_the_fast_decoder():
    model = load_fixture_model("p32")
    prompt = [1, 832, 311, 234, 107]
    with torch.no_grad(), one_thread():
        decoding = prefill(model, [prompt], 0, fast_decode=False)
        single = regroup(model, [(decoding, 0, prompt)], room=4)
        assert single.fast is not None and single.key_padding is None
        assert single.next_position.tolist() == [[5]] and single.cache.length == 5
