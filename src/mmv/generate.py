"""Text generation: a prefill, then one token per row per step until eos, the token budget or a cancel.

`generate` is the loop that the chat, the evaluation and the server share; the steps themselves live in
`mmv.decoding` (prefill / `Decoding.step`) and the choice of each token in `mmv.sampling`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mmv.decoding import prefill, remember
from mmv.model.vlm import MiniMindVLM
from mmv.prefix_cache import PrefixCache
from mmv.sampling import SamplingConfig, TokenSampler


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
    k-th placeholder run gets the k-th image. With a `prefix` (one prompt only), the prompt's longest common prefix
    with the previous request keeps its cached keys/values, and the prefix is updated to this request's.
    """
    sampling = sampling or SamplingConfig()
    eos = model.config.eos_token_id
    start = time.perf_counter()
    if image_embeds is None and pixel_inputs:
        image_embeds = model.encode_images(pixel_inputs)
    vision_ms = (time.perf_counter() - start) * 1000

    decoding = prefill(model, prompts, sampling.max_new_tokens, image_embeds=image_embeds, prefix=prefix,
                       fast_decode=fast_decode)  # fmt: skip
    sampler = TokenSampler(sampling, decoding.ids, decoding.mask, model.config.vocab_size)
    batch = len(prompts)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    fed: list[int] = []  # with a prefix: the reply tokens run through the model (all but the last chosen)
    stopped = ["length"] * batch
    finished = torch.zeros(batch, dtype=torch.bool, device=decoding.ids.device)
    ttft_ms, decode_start, steps = 0.0, 0.0, 0
    logits = decoding.logits
    for step in range(sampling.max_new_tokens):
        chosen = sampler.choose(logits)
        if step == 0:
            ttft_ms = (time.perf_counter() - start) * 1000
            decode_start = time.perf_counter()
        chosen = torch.where(finished, torch.full_like(chosen, model.config.pad_token_id), chosen)
        cancelled = _record(chosen.tolist(), finished.tolist(), tokens, stopped, sampling, eos, on_token)
        if sampling.stop_on_eos:
            finished |= chosen == eos
        if cancelled or bool(finished.all()) or step == sampling.max_new_tokens - 1:
            steps = step
            break
        if prefix is not None:
            fed.append(int(chosen[0]))
        logits = decoding.step(chosen)
        steps = step + 1
    decode_s = time.perf_counter() - decode_start
    if prefix is not None:
        remember(prefix, decoding, prompts[0], fed, image_embeds)
    return GenerationResult(
        tokens=tokens,
        vision_ms=vision_ms,
        ttft_ms=ttft_ms,
        decode_tokens_per_s=steps / decode_s if steps and decode_s > 0 else 0.0,
        stopped=stopped,
        reused_tokens=decoding.reused,
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
