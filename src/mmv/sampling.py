"""Choosing the next token: greedy at temperature 0, otherwise temperature, top-k, top-p and the reference's
sign-aware repetition penalty, sampled from a seeded generator."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class SamplingConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1.0 = no nucleus cut
    repetition_penalty: float = 1.0  # >1 discourages every token already in the prompt or reply
    seed: int | None = None
    stop_on_eos: bool = True


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


class TokenSampler:
    """The sampling state of one batch of rows: the seeded generator and, with a penalty, the tokens seen so far."""

    def __init__(
        self, sampling: SamplingConfig, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, vocab_size: int
    ) -> None:
        self.sampling = sampling
        device = prompt_ids.device
        self.generator = None
        if sampling.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(sampling.seed if sampling.seed is not None else time.time_ns() % (2**31))
        self.seen = None
        if sampling.repetition_penalty != 1.0:
            self.seen = torch.zeros((prompt_ids.shape[0], vocab_size), dtype=torch.bool, device=device)
            self.seen.scatter_(1, prompt_ids, prompt_mask.bool())

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, V] -> token ids [B]; the chosen tokens count as seen for the penalty."""
        if self.seen is not None:
            logits = apply_repetition_penalty(logits, self.seen, self.sampling.repetition_penalty)
        chosen = choose_tokens(logits, self.sampling, self.generator)
        if self.seen is not None:
            self.seen[torch.arange(chosen.shape[0], device=chosen.device), chosen] = True
        return chosen
