# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""A key/value cache allocated once per request: decoding writes into it in place, never concatenates."""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        num_layers: int,
        batch: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (num_layers, batch, kv_heads, max_len, head_dim)
        # one tensor per layer, taken apart once: a decode step then writes with one narrow and one copy per
        # tensor instead of re-indexing the 5-d block (16 of these per token, where every kernel launch counts)
        self.keys = list(torch.zeros(shape, dtype=dtype, device=device).unbind(0))
        self.values = list(torch.zeros(shape, dtype=dtype, device=device).unbind(0))
        self.max_len = max_len
        self.length = 0  # tokens already stored, the same for every row (left padding keeps rows aligned)

    def end_after(self, num_tokens: int) -> int:
        """The length once `num_tokens` more are stored; refuses to pass the allocated size."""
        end = self.length + num_tokens
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {end} requested")
        return end

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v [B, kv_heads, T, head_dim] after the cached prefix; return views over prefix + new."""
        end = self.end_after(k.shape[2])
        keys, values = self.keys[layer], self.values[layer]
        keys.narrow(2, self.length, k.shape[2]).copy_(k)
        values.narrow(2, self.length, v.shape[2]).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens

    def copy_prefix(self, other: KVCache, num_tokens: int) -> None:
        """Start this (empty) cache with the first `num_tokens` positions of `other`, which stays untouched."""
        self.end_after(num_tokens)
        for mine, theirs in zip(self.keys + self.values, other.keys + other.values, strict=True):
            mine.narrow(2, 0, num_tokens).copy_(theirs.narrow(2, 0, num_tokens))
        self.length = num_tokens

    @classmethod
    def gather(cls, sources: list[tuple[KVCache, int, int]], length: int, max_len: int) -> KVCache:
        """A new cache whose row i holds the last `count` stored tokens of row `row` of `cache`, for each
        (cache, row, count) in `sources`, right-aligned to end at `length`: the columns before a shorter row stay
        zero (its left padding), and there is room up to `max_len`. The sources stay untouched."""
        first = sources[0][0]
        _, kv_heads, _, head_dim = first.keys[0].shape
        merged = cls(
            len(first.keys), len(sources), kv_heads, max_len, head_dim, first.keys[0].dtype, first.keys[0].device
        )
        merged.end_after(length)
        for target, (cache, row, count) in enumerate(sources):
            if count > length or count > cache.length:
                raise ValueError(f"cannot move {count} tokens of a {cache.length}-token row into {length} columns")
            for mine, theirs in zip(merged.keys + merged.values, cache.keys + cache.values, strict=True):
                mine[target, :, length - count : length].copy_(theirs[row, :, cache.length - count : cache.length])
        merged.length = length
        return merged
