"""Requests joining the batch in one step: which of them are prefilled together, and that prefill.

A request that reuses a conversation's keys/values (`PrefixPool`) is prefilled alone, from where its history ends.
The others share left-padded forwards (`decoding.prefill`), shortest prompts first, a group growing while its padding
stays under its real tokens: prompts of similar length fill one forward, and one long conversation does not make
short ones pay for its width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mmv.decoding import Decoding, prefill

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM
    from mmv.prefix_cache import PrefixCache
    from mmv.serve.sequence import GenerationRequest


@dataclass
class Joining:
    request: GenerationRequest
    embeds: torch.Tensor | None = None  # [runs, run, hidden] for the prompt's images in order
    prefix: PrefixCache | None = None  # an earlier request's keys/values this prompt starts with

    @property
    def tokens(self) -> list[int]:
        return self.request.prompt.tokens


def prefill_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of the prompts to prefill together, shortest first: a group takes the next prompt while its padded
    width times its rows stays within twice its real tokens."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else []
        if group and lengths[index] * (len(group) + 1) <= 2 * (sum(lengths[i] for i in group) + lengths[index]):
            group.append(index)
        else:
            groups.append([index])
    return groups


def batches(joining: list[Joining]) -> list[list[Joining]]:
    """The prefills for the joining requests: each one with a prefix alone, the others in `prefill_groups`."""
    alone = [[j] for j in joining if j.prefix is not None]
    fresh = [j for j in joining if j.prefix is None]
    return alone + [[fresh[i] for i in group] for group in prefill_groups([len(j.tokens) for j in fresh])]


def prefill_batch(model: MiniMindVLM, batch: list[Joining]) -> Decoding:
    """One forward over the batch's prompts; row i of the result is `batch[i]`'s (room for no new tokens yet)."""
    embeds = [j.embeds for j in batch if j.embeds is not None]
    return prefill(
        model,
        [j.tokens for j in batch],
        0,
        image_embeds=torch.cat(embeds) if embeds else None,
        prefix=batch[0].prefix if len(batch) == 1 else None,
        fast_decode=False,
    )
