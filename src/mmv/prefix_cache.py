"""Keys and values kept between requests, so that a chat turn prefills only what the last request did not see.

A conversation re-renders its whole history every turn; everything up to the new user message is token for token
what the previous request already ran through the model. `PrefixCache` remembers those tokens, their KV cache and
the image features spliced into them; the next request reuses the longest common prefix (as llama.cpp does) and
prefills the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmv.model.kv_cache import KVCache


@dataclass
class PrefixCache:
    """One conversation's state between requests; it belongs to the model that filled it (keep one per model)."""

    cache: KVCache | None = None
    tokens: list[int] = field(default_factory=list)  # the ids whose keys/values are in `cache`, in order
    image_embeds: torch.Tensor | None = None  # [images, run, hidden] spliced into `tokens`' placeholder runs

    def clear(self) -> None:
        self.cache, self.tokens, self.image_embeds = None, [], None


def reusable_length(
    prefix: PrefixCache, prompt: list[int], image_embeds: torch.Tensor | None, image_token: int, run_length: int
) -> int:
    """How many leading prompt tokens can keep their cached keys/values.

    The common prefix of the cached and the new tokens, less: at least one token is left to prefill (its logits
    start the reply), a differing image ends the prefix before its run, and the cut never falls inside a run of
    placeholders (the suffix's images are spliced whole).
    """
    if prefix.cache is None:
        return 0
    limit = min(len(prefix.tokens), len(prompt) - 1)
    length = 0
    while length < limit and prefix.tokens[length] == prompt[length]:
        length += 1
    placeholders = [i for i in range(length) if prompt[i] == image_token]
    for image in range(len(placeholders) // run_length):
        if not _same_image(prefix.image_embeds, image_embeds, image):
            length = placeholders[image * run_length]
            break
    while length > 0 and prompt[length] == image_token and prompt[length - 1] == image_token:
        length -= 1
    return length


def _same_image(old: torch.Tensor | None, new: torch.Tensor | None, index: int) -> bool:
    return (
        old is not None
        and new is not None
        and index < old.shape[0]
        and index < new.shape[0]
        and torch.equal(old[index], new[index])
    )
