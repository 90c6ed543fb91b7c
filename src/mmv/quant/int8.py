"""Int8 linear layers for CPU inference: weights as int8 per output channel, run by a kernel PyTorch ships.

The kernel is `torch.ops.quantized.linear_dynamic` (torch.ao's dynamic quantization, on fbgemm): weights are
rounded once to int8 with one scale per output channel (symmetric, -127..127) and prepacked; each call quantizes
its input per tensor to unsigned 7 bits and multiplies int8 by int8 into int32. It reads a quarter of float32's
bytes, and it was the fastest int8 product at both decode and prefill shapes (benchmarks/int8_kernels.py, AMD
EPYC with AVX2, 1 thread, minimind-3v's products per step at batch 1 / 90 rows): float32 21 / 161 ms, this kernel
9.7 / 75 ms, `torch._weight_int8pack_mm` (weight-only; its CPU kernel is vectorised for AVX-512 only) 93 / 5540
ms, `torch._int_mm` 2150 / 6911 ms. Rerun that script where the choice is in doubt: everything that depends on the
kernel stays in this module, behind `quantize_linear`.

7 bits, not 8 (`reduce_range`, as torch.ao's own module): AVX2's unsigned x signed byte multiply-add sums two
products into a saturating int16, which 255 * 127 * 2 would overflow. torch.ao is deprecated in favour of torchao,
whose eager int8 weight-only CPU path was slower than float32 when measured elsewhere (it needs `torch.compile`);
tests check that the ops used here still exist in the pinned torch.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mmv.errors import MmvError

# fbgemm on every x86 CPU: the "x86" engine picks it too for linear layers; onednn took twice as long at batch 1
ENGINE = "fbgemm"
# input activations use 7 bits: see the module docstring
REDUCE_RANGE = True
_ZERO = torch.zeros(())  # out = 0 + alpha * y: one `add` writes a scaled product into a buffer


def int8_supported() -> bool:
    return ENGINE in torch.backends.quantized.supported_engines


def per_channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """One scale per output row, mapping its largest magnitude to 127 (an all-zero row keeps a tiny scale)."""
    low, high = weight.detach().aminmax(dim=1)  # no weight-sized temporary, unlike abs().amax()
    return (torch.maximum(-low, high) / 127).clamp_min(1e-10)


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 (per-output-channel scales, prepacked); float32 in and out.

    Holds no float copy of W and no parameters: it is built from a loaded float layer and never saved, since
    checkpoints stay in the reference formats.
    """

    def __init__(self, packed: torch.ScriptObject, in_features: int, out_features: int, has_bias: bool) -> None:
        super().__init__()
        self.packed = packed
        self.in_features, self.out_features, self.has_bias = in_features, out_features, has_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic.default(x, self.packed, REDUCE_RANGE)

    # FastDecoder's products (mmv.model.fast_decode.Product): a vector in, written or added with a scale. The
    # input's quantization is scale-invariant, so `alpha` may be applied after the product without changing it.
    # Each is one kernel call and one add: the decode step runs seven per layer, so operator calls count (a
    # `mul` by a Python float would add four more: the float becomes a tensor first).
    def write(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        torch.add(_ZERO, self._product(vector), alpha=alpha, out=out)

    def add_to(self, out: torch.Tensor, vector: torch.Tensor, alpha: float) -> None:
        out.add_(self._product(vector), alpha=alpha)

    def _product(self, vector: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic.default(vector.view(1, -1), self.packed, REDUCE_RANGE).view(-1)

    def weight_bytes(self) -> int:
        """Bytes of quantized weights (values and scales) a product reads; the packed layout pads a little."""
        return self.out_features * (self.in_features + 4)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        raise MmvError("an int8-quantized model cannot be saved: quantization happens at load time only")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, int8"


def quantize_linear(linear: nn.Linear) -> Int8Linear:
    """The int8 layer computing what `linear` (float32, CPU) computes, to int8 rounding of W and of each input."""
    if not int8_supported():
        raise MmvError(
            "int8 inference needs PyTorch's fbgemm engine (x86 CPUs); this build offers "
            + ", ".join(torch.backends.quantized.supported_engines)
        )
    weight = linear.weight.detach()
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        raise MmvError(f"int8 quantization takes a float32 CPU layer, not {weight.dtype} on {weight.device}")
    scales = per_channel_scales(weight)
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    bias = None if linear.bias is None else linear.bias.detach().clone()
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        with warnings.catch_warnings():
            # quantized tensors are deprecated (torch.ao -> torchao) but still the input linear_prepack takes
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(quantized, bias)
    finally:
        torch.backends.quantized.engine = previous
    return Int8Linear(packed, linear.in_features, linear.out_features, bias is not None)
