"""Which kept conversation a new request resumes from, and when a short shared start is not worth taking."""

from __future__ import annotations

import torch

from mmv.model.kv_cache import KVCache
from mmv.prefix_cache import PrefixCache
from mmv.serve.prefix_pool import PrefixPool

IMAGE_TOKEN, RUN = 99, 4


def kept(tokens: list[int]) -> PrefixCache:
    cache = KVCache(1, 1, 1, 64, 2, torch.float32, "cpu")
    cache.advance(len(tokens))
    return PrefixCache(cache=cache, tokens=tokens)


def test_the_entry_saving_the_most_is_taken_and_leaves_the_pool():
    pool = PrefixPool(4, IMAGE_TOKEN, RUN)
    short, long = kept([1, 2, 3, 7]), kept([1, 2, 3, 4, 5, 6])
    pool.store(short)
    pool.store(long)
    assert pool.take([1, 2, 3, 4, 5, 6, 8, 9], None) is long
    assert pool.entries == [short]


def test_a_prefix_shorter_than_the_minimum_is_left_in_the_pool():
    pool = PrefixPool(4, IMAGE_TOKEN, RUN)
    entry = kept([1, 2, 3, 4, 5, 6])
    pool.store(entry)
    prompt = [1, 2, 3, 10, 11, 12, 13, 14]  # three tokens in common
    assert pool.take(prompt, None, minimum=4) is None and pool.entries == [entry]
    assert pool.take(prompt, None, minimum=3) is entry and pool.entries == []
    assert pool.take(prompt, None) is None  # nothing left
