# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The layers every MiniMind block is built from: RMSNorm, the SwiGLU feed-forward (dense or as one expert), and
the linear layer of its projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DecodeLinear(nn.Linear):
    """nn.Linear (same parameters and state dict) whose inference on a few rows runs as W @ x^T.

    A batched decode step multiplies a handful of rows by each weight matrix. There, on the CPU in float32, torch's
    `linear` (x @ W^T) took up to 2.2x as long as the same product written W @ x^T (benchmarks/small_products.py,
    AMD EPYC AVX2, minimind-3v's matrices per step, 2 threads: 35 vs 21 ms at 2 rows, 44 vs 20 at 4, 38 vs 34 at
    8, 50 vs 45 at 16; 1 thread: 49 vs 37 at 4 rows, 54 vs 57 at 8), and the server's decode step at 4 and 8 rows
    went from 53 to 37 ms and 57 to 45. Training, other devices and dtypes, one row (the fast decoder's own path)
    and longer inputs keep `linear`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled() or not 1 < rows <= _few_rows():
            return F.linear(x, self.weight, self.bias)
        out = (self.weight @ x.reshape(rows, self.in_features).T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def _few_rows() -> int:
    """The most rows for which W @ x^T was measured faster than x @ W^T at this thread count."""
    return 16 if torch.get_num_threads() > 1 else 4


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 statistics and weight multiply before the cast back, as the reference does (one fused kernel
        # for the statistics: decode runs 33 of these per token)
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one kernel, same math
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (self.weight.float() * normed).to(x.dtype)


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = DecodeLinear(hidden, intermediate, bias=False)
        self.down_proj = DecodeLinear(intermediate, hidden, bias=False)
        self.up_proj = DecodeLinear(hidden, intermediate, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
