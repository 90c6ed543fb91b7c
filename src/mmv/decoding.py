"""The two halves of generation every caller shares: one prefill of a batch of prompts, then single-token steps.

`prefill` left-pads the prompts (rows stay aligned in one KV cache allocated for the whole reply; a key-padding mask
hides the pads and positions count real tokens only), splices the images in and returns the logits of each row's
first new token. `Decoding.step` feeds one token per row and returns the logits of the next. A single unpadded
prompt on CPU float32 steps through `FastDecoder`. With a `PrefixCache`, a prompt's longest common prefix with the
previous request keeps its keys/values and only the rest is prefilled. `regroup` lays rows of earlier decodings out
as one batch again, the way a server joins new requests to a running batch and lets finished ones leave.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmv.model.fast_decode import FastDecoder
from mmv.model.kv_cache import KVCache
from mmv.model.vlm import MiniMindVLM
from mmv.prefix_cache import PrefixCache, reusable_length


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@dataclass
class Decoding:
    """One batch after its prefill: the cache it decodes into and what each step needs to extend it."""

    model: MiniMindVLM
    cache: KVCache
    logits: torch.Tensor  # [B, V] float32: the logits of each row's next token
    ids: torch.Tensor  # [B, W] the left-padded prompts
    mask: torch.Tensor  # [B, W] 1 on prompt tokens, 0 on padding
    key_padding: torch.Tensor | None  # [B, W + max_new_tokens], or None when no row is padded
    next_position: torch.Tensor  # [B, 1] the RoPE position of each row's next token
    reused: int = 0  # prompt tokens whose keys/values came from a PrefixCache
    fast: FastDecoder | None = None

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row ([B]); return the logits of the token after it ([B, V], float32)."""
        if self.fast is not None:
            self.logits = self.fast(int(tokens[0]))
        else:
            padding = self.key_padding
            self.logits = (
                self.model(
                    tokens[:, None],
                    cache=self.cache,
                    last_only=True,
                    key_padding=padding[:, : self.cache.length + 1] if padding is not None else None,
                    position_ids=self.next_position if padding is not None else None,
                )
                .logits[:, -1]
                .float()
            )
        self.next_position = self.next_position + 1
        return self.logits


@torch.inference_mode()
def prefill(
    model: MiniMindVLM,
    prompts: list[list[int]],
    max_new_tokens: int,
    *,
    image_embeds: torch.Tensor | None = None,
    prefix: PrefixCache | None = None,
    fast_decode: bool = True,
) -> Decoding:
    """Run the prompts (placeholder runs expanded; `image_embeds` holds every image in order) through the model.

    The cache has room for `max_new_tokens` more tokens per row. With a `prefix` (one prompt only), the common
    prefix with the previous request is copied instead of recomputed and the prefix is emptied: the caller stores
    the finished request back into it (`remember`). `fast_decode=False` keeps every step on the module path.
    """
    config = model.config
    device = model.rope_cos.device
    ids, mask = left_pad(prompts, config.pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    batch, width = ids.shape
    padded = bool((mask == 0).any())
    total = width + max_new_tokens
    cache = model.new_cache(batch, total, model.model.embed_tokens.weight.dtype, device)
    reused, prefill_embeds = 0, image_embeds
    if prefix is not None:
        if batch != 1:
            raise ValueError("a PrefixCache serves one prompt at a time")
        reused = reusable_length(prefix, prompts[0], image_embeds, config.image_token_id, config.image_token_len)
        if reused:
            cache.copy_prefix(prefix.cache, reused)
        prefix.clear()  # copied: free the old cache now, and an interrupted request leaves nothing stale behind
        if reused and image_embeds is not None:  # the images of the reused prefix are in the cache already
            suffix_images = int((ids[:, reused:] == config.image_token_id).sum()) // config.image_token_len
            prefill_embeds = image_embeds[image_embeds.shape[0] - suffix_images :]
    key_padding = None
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    if padded:
        key_padding = torch.ones((batch, total), dtype=torch.long, device=device)
        key_padding[:, :width] = mask
    logits = (
        model(
            ids[:, reused:],
            image_embeds=prefill_embeds,
            cache=cache,
            last_only=True,
            key_padding=key_padding,
            position_ids=positions if padded else None,
        )
        .logits[:, -1]
        .float()
    )
    fast = FastDecoder(model, cache) if fast_decode and FastDecoder.supports(model, batch) else None
    return Decoding(model, cache, logits, ids, mask, key_padding, positions[:, -1:] + 1, reused, fast)


def remember(
    prefix: PrefixCache, decoding: Decoding, prompt: list[int], fed: list[int], image_embeds: torch.Tensor | None
) -> None:
    """Keep a finished single-prompt request in `prefix`: its cache holds the prompt and the `fed` reply tokens."""
    prefix.cache, prefix.tokens, prefix.image_embeds = decoding.cache, prompt + fed, image_embeds


def regroup(model: MiniMindVLM, rows: list[tuple[Decoding, int, list[int]]], room: int) -> Decoding:
    """One batch over rows of earlier decodings: (decoding, row, the ids whose keys/values that row holds).

    The rows are laid out as `prefill` would lay out those ids (left-padded to the longest, positions counting real
    tokens only), so each keeps decoding exactly as before; every row gets room for `room` more tokens. A single row
    steps through `FastDecoder` where `prefill` would use it.
    """
    ids, mask = left_pad([tokens for _, _, tokens in rows], model.config.pad_token_id)
    device = model.rope_cos.device
    ids, mask = ids.to(device), mask.to(device)
    batch, width = ids.shape
    cache = KVCache.gather([(d.cache, row, len(tokens)) for d, row, tokens in rows], width, width + room)
    key_padding = None
    if bool((mask == 0).any()):
        key_padding = torch.ones((batch, width + room), dtype=torch.long, device=device)
        key_padding[:, :width] = mask
    logits = torch.stack([d.logits[row] for d, row, _ in rows])
    fast = FastDecoder(model, cache) if FastDecoder.supports(model, batch) else None
    return Decoding(model, cache, logits, ids, mask, key_padding, mask.sum(dim=-1, keepdim=True), 0, fast)
