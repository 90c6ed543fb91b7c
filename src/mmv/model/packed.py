"""Float32 weights laid out once in oneDNN's blocked format, for the server's batched CPU inference.

A batched decode step multiplies a handful of rows by each weight matrix. MKL's float32 GEMM (behind torch's
`linear` and `DecodeLinear`'s W @ x^T) is tuned for large products: at 8 rows it took twice as long as at 4 over
minimind-3v's matrices. oneDNN's matmul on a weight reordered once ahead of time into its own blocked layout
(the path `torch.compile` takes for CPU linear layers, through the same two operators) was the fastest at every
row count measured, prefill sizes included (benchmarks/small_products.py, AMD EPYC AVX2, 2 threads, one pass over
the 244 MB of a step's matrices: 8 rows 25 ms against 36 for W @ x^T and 47 for `linear`; 64 rows 76 / 82 / 104).

`pack_linears` swaps a model's float32 CPU projections for `PackedLinear`s that share their parameters (state dict,
tied weights and `parameters()` stay as they were) and hold the reordered copy beside them: it costs one more copy
of those weights in memory. A packed layer falls back to the float weight when gradients are on, off the CPU, for
another dtype, or once the weight has changed in place since it was packed. Everything that depends on the two
oneDNN operators stays in this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmv.model.layers import DecodeLinear

# the batch size oneDNN lays the weight out for; the layout served every row count measured (1 to 64) best
PACKED_FOR_ROWS = 8


def packing_supported() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class PackedLinear(nn.Module):
    """An `nn.Linear` (the same parameter objects) that multiplies through a oneDNN-packed copy of its weight."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACKED_FOR_ROWS)
        self.packed_version = linear.weight._version  # an in-place update since (training) makes the copy stale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu" or self.stale:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    @property
    def stale(self) -> bool:
        return self.weight._version != self.packed_version

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, packed"


def pack_linears(model: nn.Module) -> int:
    """Swap the float32 CPU projections of `model`'s language model (`DecodeLinear`s: attention, feed-forward,
    experts, output head) for `PackedLinear`s; the number swapped (0 where oneDNN's operators are missing)."""
    if not packing_supported():
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            weight = getattr(child, "weight", None)
            if type(child) is DecodeLinear and weight.dtype == torch.float32 and weight.device.type == "cpu":
                setattr(parent, name, PackedLinear(child))
                swapped += 1
    return swapped
