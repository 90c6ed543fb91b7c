"""KVCache.gather: rows of several caches laid out again as one left-padded batch, sources untouched."""

from __future__ import annotations

import pytest
import torch

from mmv.model.kv_cache import KVCache


def filled(batch: int, length: int, offset: float) -> KVCache:
    cache = KVCache(2, batch, 1, length + 2, 3, torch.float32, "cpu")
    for tensor in cache.keys + cache.values:
        tensor.copy_(torch.arange(tensor.numel(), dtype=torch.float32).view_as(tensor) + offset)
    cache.length = length
    return cache


def test_rows_are_right_aligned_and_the_padding_is_zero():
    a, b = filled(2, 5, 0.0), filled(1, 3, 1000.0)
    merged = KVCache.gather([(a, 1, 4), (b, 0, 3)], length=6, max_len=9)
    assert merged.length == 6 and merged.max_len == 9 and merged.keys[0].shape[0] == 2
    for layer in range(2):
        torch.testing.assert_close(merged.keys[layer][0, :, 2:6], a.keys[layer][1, :, 1:5], rtol=0, atol=0)
        torch.testing.assert_close(merged.values[layer][1, :, 3:6], b.values[layer][0, :, 0:3], rtol=0, atol=0)
        assert not merged.keys[layer][0, :, :2].any() and not merged.values[layer][1, :, :3].any()


def test_the_sources_stay_untouched_and_bounds_are_checked():
    a = filled(1, 4, 0.0)
    before = [t.clone() for t in a.keys + a.values]
    KVCache.gather([(a, 0, 4)], 4, 4)
    assert all(torch.equal(x, y) for x, y in zip(before, a.keys + a.values, strict=True))
    with pytest.raises(ValueError, match="cannot move"):
        KVCache.gather([(a, 0, 5)], 6, 8)  # more tokens than the row holds
    with pytest.raises(ValueError, match="cannot move"):
        KVCache.gather([(a, 0, 4)], 3, 8)  # more tokens than the columns
    with pytest.raises(ValueError, match="holds 5 tokens"):
        KVCache.gather([(a, 0, 4)], 6, 5)
