"""The keys/values of recent conversations, so that a client resending its history prefills only the new turn.

The protocol is stateless: every request carries the whole conversation. Each finished request leaves its tokens,
image features and KV cache here (one `PrefixCache` each, newest last); a new request takes the entry with which it
shares the longest reusable prefix (same tokens, same images: `reusable_length`), as llama.cpp picks a slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.prefix_cache import PrefixCache, reusable_length

if TYPE_CHECKING:
    import torch


class PrefixPool:
    def __init__(self, capacity: int, image_token: int, run_length: int) -> None:
        self.capacity, self.image_token, self.run_length = capacity, image_token, run_length
        self.entries: list[PrefixCache] = []  # least recently stored first

    def take(self, prompt: list[int], image_embeds: torch.Tensor | None, minimum: int = 1) -> PrefixCache | None:
        """Remove and return the entry that saves the most prefill for `prompt`, or None if none saves `minimum`
        tokens."""
        lengths = [reusable_length(e, prompt, image_embeds, self.image_token, self.run_length) for e in self.entries]
        if not lengths or max(lengths) < max(minimum, 1):
            return None
        return self.entries.pop(lengths.index(max(lengths)))

    def store(self, entry: PrefixCache) -> None:
        if self.capacity <= 0:
            return
        self.entries.append(entry)
        del self.entries[: -self.capacity]

    def clear(self) -> None:
        self.entries.clear()
