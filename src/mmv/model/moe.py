# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""Mixture-of-experts MLP: softmax router over all experts, top-k dispatch, renormalised weights, aux loss;
MiniMind2 adds shared experts and keeps a lone expert's router probability as its weight."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmv.config import VLMConfig
from mmv.model.layers import FeedForward


class MoEFeedForward(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.num_experts, self.top_k = config.num_experts, config.num_experts_per_tok
        self.aux_coef = config.router_aux_loss_coef
        self.renormalise = config.norm_topk_prob and not (self.top_k == 1 and config.top1_router_weight)
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(
            FeedForward(config.hidden_size, config.moe_intermediate_size) for _ in range(config.num_experts)
        )
        # MiniMind2: experts every token passes through, unweighted, beside the routed ones
        self.shared_experts = nn.ModuleList(
            FeedForward(config.hidden_size, config.moe_intermediate_size) for _ in range(config.num_shared_experts)
        )
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        probs = F.softmax(self.gate(tokens), dim=-1)
        weights, chosen = torch.topk(probs, k=self.top_k, dim=-1, sorted=False)
        if self.renormalise:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        out = torch.zeros_like(tokens)
        for index, expert in enumerate(self.experts):
            hit = chosen == index  # [N, k]; a token picks an expert at most once
            rows = hit.any(dim=-1).nonzero().flatten()
            if rows.numel():
                out.index_add_(0, rows, (expert(tokens[rows]) * weights[hit].unsqueeze(-1)).to(out.dtype))
            elif self.training:
                # keep every expert in the autograd graph so DDP sees a gradient for each parameter
                out = out + 0 * sum(p.sum() for p in expert.parameters())
        for expert in self.shared_experts:
            out = out + expert(tokens)
        self.aux_loss = self.load_balancing_loss(probs, chosen) if self.training else probs.new_zeros(())
        return out.view(shape)

    def load_balancing_loss(self, probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """sum_e(fraction of tokens routed to e * mean router probability of e) * E * coef."""
        if self.aux_coef <= 0:
            return probs.new_zeros(())
        routed = F.one_hot(chosen, self.num_experts).float().sum(1).mean(0)
        return (routed * probs.mean(0)).sum() * self.num_experts * self.aux_coef
