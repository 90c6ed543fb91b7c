"""PrefixCache: what a request may reuse of the last one, and that reusing it changes nothing but the work done."""

from __future__ import annotations

import pytest
import torch

from mmv.generate import generate
from mmv.model.kv_cache import KVCache
from mmv.prefix_cache import PrefixCache, reusable_length
from mmv.sampling import SamplingConfig
from tests.conftest import fixture_cases, load_fixture_model, pixel_inputs

IMG, RUN = 12, 4  # placeholder id and a short run length for the arithmetic tests


def cached(tokens: list[int], images: torch.Tensor | None = None) -> PrefixCache:
    return PrefixCache(cache=KVCache(1, 1, 1, len(tokens), 2, torch.float32, "cpu"), tokens=tokens, image_embeds=images)


def test_the_common_prefix_is_reused_and_one_token_is_always_left_to_prefill():
    assert reusable_length(PrefixCache(), [1, 2, 3], None, IMG, RUN) == 0
    assert reusable_length(cached([1, 2, 3, 4, 9]), [1, 2, 3, 4, 5, 6], None, IMG, RUN) == 4
    assert reusable_length(cached([1, 2, 3]), [1, 2, 3], None, IMG, RUN) == 2
    assert reusable_length(cached([7, 2, 3]), [1, 2, 3], None, IMG, RUN) == 0


def test_the_cut_never_falls_inside_an_image_run():
    images = torch.randn(2, RUN, 3)
    old = [1] + [IMG] * 8 + [5, 6]
    new = [1] + [IMG] * 8 + [5, 7]
    assert reusable_length(cached(old, images), new, images, IMG, RUN) == 10
    # the new prompt diverges in the middle of the second image's run: both adjacent images are prefilled again
    shorter = cached([1] + [IMG] * 6 + [9], images)
    assert reusable_length(shorter, new, images, IMG, RUN) == 1


def test_a_different_image_ends_the_prefix_before_its_run():
    old_images = torch.randn(2, RUN, 3)
    new_images = torch.stack([old_images[0], torch.randn(RUN, 3)])
    tokens = [1] + [IMG] * RUN + [5] + [IMG] * RUN + [6, 7]
    assert reusable_length(cached(tokens, old_images), [*tokens, 8], new_images, IMG, RUN) == 6
    assert reusable_length(cached(tokens, old_images), [*tokens, 8], None, IMG, RUN) == 1


def test_a_second_turn_reuses_the_first_and_replies_as_a_fresh_request():
    model, cases = load_fixture_model("p32"), fixture_cases("p32")
    first = cases["input_ids"][0].tolist()
    sampling = SamplingConfig(max_new_tokens=12, stop_on_eos=False)
    embeds = model.encode_images(pixel_inputs(cases)).detach()
    prefix = PrefixCache()
    reply = generate(model, [first], sampling, image_embeds=embeds, prefix=prefix).tokens[0]
    assert prefix.tokens == first + reply[:-1] and prefix.cache.length == len(prefix.tokens)

    second = first + reply + [2, 198, 1, 872, 198, 300, 301]
    again = generate(model, [second], sampling, image_embeds=embeds, prefix=prefix)
    fresh = generate(model, [second], sampling, image_embeds=embeds)
    assert again.reused_tokens == len(first) + len(reply) - 1
    assert again.tokens == fresh.tokens

    other_image = embeds.flip(1)  # same placeholders, another picture: nothing after its run may be reused
    changed = generate(model, [second], sampling, image_embeds=other_image, prefix=prefix)
    assert changed.reused_tokens == first.index(model.config.image_token_id)
    assert changed.tokens == generate(model, [second], sampling, image_embeds=other_image).tokens


def test_a_prefix_serves_one_prompt_at_a_time():
    model = load_fixture_model("p32")
    with pytest.raises(ValueError, match="one prompt at a time"):
        generate(model, [[1, 2], [1, 3]], SamplingConfig(max_new_tokens=2), prefix=PrefixCache())


def test_an_interrupted_request_leaves_no_stale_prefix():
    model = load_fixture_model("p32")
    prefix = PrefixCache()
    sampling = SamplingConfig(max_new_tokens=6, stop_on_eos=False)
    generate(model, [[1, 872, 198, 300]], sampling, prefix=prefix)

    def interrupt(_row: int, _token: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(model, [[1, 872, 198, 300, 301]], sampling, prefix=prefix, on_token=interrupt)
    assert prefix.cache is None and prefix.tokens == []
    assert generate(model, [[1, 872, 198, 300, 302]], sampling, prefix=prefix).reused_tokens == 0
