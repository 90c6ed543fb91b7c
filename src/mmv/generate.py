"""Text generation: one prefill, then single-token decode steps into a KV cache allocated once per request.

Several prompts decode together with left padding (rows stay aligned in the cache; a key-padding mask hides the
pads and positions count real tokens only). Greedy at temperature 0; otherwise temperature, top-k, top-p and the
reference's sign-aware repetition penalty, sampled from a seeded generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mmv.model.fast_decode import FastDecoder
from mmv.model.vlm import MiniMindVLM
from mmv.prefix_cache import PrefixCache, reusable_length


@dataclass
class SamplingConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1.0 = no nucleus cut
    repetition_penalty: float = 1.0  # >1 discourages every token already in the prompt or reply
    seed: int | None = None
    stop_on_eos: bool = True


@dataclass
class GenerationResult:
    tokens: list[list[int]]  # new tokens per prompt, eos excluded
    vision_ms: float = 0.0
    ttft_ms: float = 0.0  # request start (incl. vision and prefill) to first token
    decode_tokens_per_s: float = 0.0
    stopped: list[str] = field(default_factory=list)  # per prompt: "eos", "length" or "cancelled"
    reused_tokens: int = 0  # prompt tokens whose keys/values came from a PrefixCache instead of the prefill


# Called with (row, token id) as each token is chosen; returning True cancels the whole request.
TokenCallback = Callable[[int, int], bool | None]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Positive logits of seen tokens are divided by the penalty, negative ones multiplied (sign-aware)."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def choose_tokens(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, V] (float32) -> token ids [B]."""
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) > sampling.top_p  # always keeps the top token
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: MiniMindVLM,
    prompts: list[list[int]],
    sampling: SamplingConfig | None = None,
    *,
    pixel_inputs: dict[str, torch.Tensor] | None = None,
    image_embeds: torch.Tensor | None = None,
    on_token: TokenCallback | None = None,
    fast_decode: bool = True,
    prefix: PrefixCache | None = None,
) -> GenerationResult:
    """Generate a reply for each prompt (token ids with image placeholder runs already expanded).

    `pixel_inputs` holds every image of every prompt in order (or pass their projected `image_embeds`); the
    k-th placeholder run gets the k-th image. A single prompt on CPU decodes through `FastDecoder` where it
    applies; `fast_decode=False` keeps every step on the module path (the tests compare the two). With a `prefix`
    (one prompt only), the prompt's longest common prefix with the previous request keeps its cached keys/values,
    and the prefix is updated to this request's.
    """
    sampling = sampling or SamplingConfig()
    config = model.config
    device = model.rope_cos.device
    dtype = model.model.embed_tokens.weight.dtype
    start = time.perf_counter()

    if image_embeds is None and pixel_inputs:
        image_embeds = model.encode_images(pixel_inputs)
    vision_ms = (time.perf_counter() - start) * 1000

    ids, mask = left_pad(prompts, config.pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    batch, width = ids.shape
    padded = bool((mask == 0).any())
    total = width + sampling.max_new_tokens
    cache = model.new_cache(batch, total, dtype, device)
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
    key_padding = torch.ones((batch, total), dtype=torch.long, device=device)
    key_padding[:, :width] = mask
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)

    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(sampling.seed if sampling.seed is not None else int(time.time_ns()) % (2**31))
    seen = None
    if sampling.repetition_penalty != 1.0:
        seen = torch.zeros((batch, config.vocab_size), dtype=torch.bool, device=device)
        seen.scatter_(1, ids, mask.bool())

    logits = (
        model(
            ids[:, reused:],
            image_embeds=prefill_embeds,
            cache=cache,
            last_only=True,
            key_padding=key_padding if padded else None,
            position_ids=positions if padded else None,
        )
        .logits[:, -1]
        .float()
    )
    next_position = positions[:, -1:] + 1
    fast = FastDecoder(model, cache) if fast_decode and FastDecoder.supports(model, batch) else None

    tokens: list[list[int]] = [[] for _ in range(batch)]
    fed: list[int] = []  # with a prefix: the reply tokens run through the model (all but the last chosen)
    stopped = ["length"] * batch
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    ttft_ms, decode_start, steps = 0.0, 0.0, 0
    for step in range(sampling.max_new_tokens):
        if seen is not None:
            logits = apply_repetition_penalty(logits, seen, sampling.repetition_penalty)
        chosen = choose_tokens(logits, sampling, generator)
        if step == 0:
            ttft_ms = (time.perf_counter() - start) * 1000
            decode_start = time.perf_counter()
        chosen = torch.where(finished, torch.full_like(chosen, config.pad_token_id), chosen)
        cancelled = _record(
            chosen.tolist(), finished.tolist(), tokens, stopped, sampling, config.eos_token_id, on_token
        )
        if sampling.stop_on_eos:
            finished |= chosen == config.eos_token_id
        if cancelled or bool(finished.all()) or step == sampling.max_new_tokens - 1:
            steps = step
            break
        if seen is not None:
            seen[torch.arange(batch, device=device), chosen] = True
        if prefix is not None:
            fed.append(int(chosen[0]))
        if fast is not None:
            logits = fast(int(chosen[0]))
        else:
            logits = (
                model(
                    chosen[:, None],
                    cache=cache,
                    last_only=True,
                    key_padding=key_padding[:, : cache.length + 1] if padded else None,
                    position_ids=next_position if padded else None,
                )
                .logits[:, -1]
                .float()
            )
        next_position = next_position + 1
        steps = step + 1
    decode_s = time.perf_counter() - decode_start
    if prefix is not None:
        prefix.cache, prefix.tokens, prefix.image_embeds = cache, prompts[0] + fed, image_embeds
    return GenerationResult(
        tokens=tokens,
        vision_ms=vision_ms,
        ttft_ms=ttft_ms,
        decode_tokens_per_s=steps / decode_s if steps and decode_s > 0 else 0.0,
        stopped=stopped,
        reused_tokens=reused,
    )


def _record(
    chosen: list[int],
    finished: list[bool],
    tokens: list[list[int]],
    stopped: list[str],
    sampling: SamplingConfig,
    eos: int,
    on_token: TokenCallback | None,
) -> bool:
    """Append each live row's token (eos is not part of the reply); return True if the callback cancels."""
    cancelled = False
    for row, token in enumerate(chosen):
        if finished[row]:
            continue
        if sampling.stop_on_eos and token == eos:
            stopped[row] = "eos"
            continue
        tokens[row].append(token)
        if on_token is not None and on_token(row, token):
            cancelled = True
    if cancelled:
        stopped[:] = ["cancelled" if s == "length" else s for s in stopped]
    return cancelled
