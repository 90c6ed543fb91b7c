# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""Rotary position tables (half-split rotation), with optional YaRN scaling for long contexts."""

from __future__ import annotations

import math
from typing import Any

import torch


def inverse_frequencies(head_dim: int, theta: float, scaling: dict[str, Any] | None, max_len: int) -> torch.Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    if not scaling:
        return freqs
    original = scaling.get("original_max_position_embeddings", 2048)
    factor = scaling.get("factor", 16)
    beta_fast, beta_slow = scaling.get("beta_fast", 32.0), scaling.get("beta_slow", 1.0)
    if max_len / original <= 1.0:
        return freqs

    # YaRN: keep high-frequency dims as they are, stretch low-frequency dims by `factor`, ramp in between.
    def dim_of(beta: float) -> float:
        return head_dim * math.log(original / (beta * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(dim_of(beta_fast)), 0)
    high = min(math.ceil(dim_of(beta_slow)), head_dim // 2 - 1)
    ramp = torch.clamp((torch.arange(head_dim // 2).float() - low) / max(high - low, 1e-3), 0, 1)
    return freqs * (1 - ramp + ramp / factor)


def rope_tables(
    head_dim: int, max_len: int, theta: float, scaling: dict[str, Any] | None = None, rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape [rows, head_dim] (rows: max_len by default) for `apply_rope`.

    The frequencies depend on max_len (YaRN applies only past the original context), never on `rows`, and each row
    is computed on its own: a table of fewer rows equals the first rows of the full one bit for bit.
    The sin table carries the rotation's sign (its first half is negated), so that rotating is two products and a
    sum over x and x with its halves swapped (fewer kernels per decode step than negating and concatenating halves).
    """
    positions = torch.arange(max_len if rows is None else rows).float()
    freqs = torch.outer(positions, inverse_frequencies(head_dim, theta, scaling, max_len))
    attention_factor = (scaling or {}).get("attention_factor", 1.0)
    cos = torch.cat([freqs.cos(), freqs.cos()], dim=-1) * attention_factor
    sin = torch.cat([-freqs.sin(), freqs.sin()], dim=-1) * attention_factor
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, head_dim]; cos/sin from `rope_tables`, broadcastable to x and in its dtype.

    Equals the reference's x * cos + rotate_half(x) * sin bit for bit: rotate_half(x) = (-x2, x1) and the swapped
    halves (x2, x1) times (-sin, sin) are the same products.
    """
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin
