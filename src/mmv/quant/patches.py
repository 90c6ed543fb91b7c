"""A patch-embedding convolution computed as one matrix product over the image's patches.

The vision encoders' patch embedding is a convolution whose kernel tiles the image (stride = kernel, no padding).
On the CPU torch runs it through oneDNN, whose first call made 16 MB resident (its generated code and caches:
measured in an int8 `mmv chat` session of minimind-3v, 571 -> 588 MB, against 4 MB this way), most of the memory
such a session adds after loading. Cutting the image into patches and multiplying them by the kernel as a matrix
is the same function (same weights, summed in another order: within 4e-6) and runs on the sgemm every float layer
uses anyway. The int8 model swaps it in (`mmv.quant.model`); float models keep torch's convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tiles_the_image(conv: nn.Module) -> bool:
    """A 2-D convolution over non-overlapping patches: what `PatchProduct` computes."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.stride == conv.kernel_size
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


class PatchProduct(nn.Module):
    """`conv(x)` for a convolution that `tiles_the_image`, with its parameters (shared, not copied)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias  # transformers reads `.weight.dtype` before calling
        self.kernel_size = conv.kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        patch_h, patch_w = self.kernel_size
        rows, cols = height // patch_h, width // patch_w  # a remainder is dropped, as the convolution drops it
        patches = (
            x[:, :, : rows * patch_h, : cols * patch_w]
            .reshape(batch, channels, rows, patch_h, cols, patch_w)
            .permute(0, 2, 4, 1, 3, 5)  # each patch's values in the kernel's (channel, row, column) order
            .reshape(batch, rows * cols, channels * patch_h * patch_w)
        )
        out = F.linear(patches, self.weight.reshape(self.weight.shape[0], -1), self.bias)
        return out.transpose(1, 2).reshape(batch, -1, rows, cols)


def swap_patch_convolutions(module: nn.Module) -> int:
    """Replace every convolution in `module` that `tiles_the_image` by a `PatchProduct`; how many."""
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if tiles_the_image(child):
                setattr(parent, name, PatchProduct(child))
                swapped += 1
    return swapped
