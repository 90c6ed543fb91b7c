"""Int8Linear: the pinned torch still ships its kernel, and it computes the float layer to int8 rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmv.errors import MmvError
from mmv.quant.int8 import ENGINE, Int8Linear, per_channel_scales, quantize_linear


def float_layer(in_features: int, out_features: int, bias: bool = False, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.normal_(0, 0.02)
    return layer


def relative_error(got: torch.Tensor, exact: torch.Tensor) -> float:
    return float((got - exact).norm() / exact.norm())


def test_the_deprecated_torch_ao_ops_still_exist_in_the_pinned_torch():
    # torch.ao is deprecated in favour of torchao: this fails first when a torch upgrade drops what int8 runs on
    assert ENGINE in torch.backends.quantized.supported_engines
    for op in ("linear_prepack", "linear_dynamic"):
        assert hasattr(torch.ops.quantized, op)
    assert callable(torch.quantize_per_channel)


@pytest.mark.parametrize("shape", [(1, 96), (5, 96), (2, 7, 96)], ids=["one-row", "rows", "batch-sequence"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_matches_the_float_layer_to_int8_rounding(shape, bias):
    layer = float_layer(96, 200, bias)
    quantized = quantize_linear(layer)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = layer(x)
    got = quantized(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    # 8-bit weights and 7-bit inputs: 1.4-1.8% measured at this width; a wrong scale or layout is off by far more
    assert relative_error(got, exact) < 2.5e-2


def test_weights_are_rounded_per_output_channel():
    layer = float_layer(64, 3)
    with torch.no_grad():  # rows of very different sizes: a single scale would flatten the small ones to zero
        layer.weight[0] *= 1000
        layer.weight[2] *= 0.001
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        exact = layer(x)
    got = quantize_linear(layer)(x)
    for row in range(3):
        assert relative_error(got[:, row], exact[:, row]) < 3e-2


def test_scales_map_each_rows_largest_magnitude_to_127():
    weight = torch.tensor([[0.5, -2.54, 1.0], [0.0, 0.0, 0.0]])
    scales = per_channel_scales(weight)
    assert scales[0].item() == pytest.approx(2.54 / 127)
    assert 0 < scales[1].item() < 1e-9  # an all-zero row must not divide by zero


def test_decoder_products_write_and_add_with_a_scale():
    quantized = quantize_linear(float_layer(48, 32))
    vector = torch.randn(48, generator=torch.Generator().manual_seed(3))
    plain = quantized(vector[None])[0]
    out = torch.full((32,), 7.0)
    quantized.write(out, vector, 0.25)
    torch.testing.assert_close(out, plain * 0.25)
    base = torch.randn(32)
    added = base.clone()
    quantized.add_to(added, vector, -3.0)
    torch.testing.assert_close(added, base - 3.0 * plain)


def test_holds_no_float_weights_and_refuses_to_be_saved():
    quantized = quantize_linear(float_layer(32, 16))
    assert isinstance(quantized, Int8Linear)
    assert list(quantized.parameters()) == [] and list(quantized.buffers()) == []
    assert quantized.weight_bytes() == 16 * (32 + 4)
    with pytest.raises(MmvError, match="cannot be saved"):
        nn.Sequential(quantized).state_dict()


def test_refuses_a_layer_that_is_not_float32_on_cpu():
    with pytest.raises(MmvError, match="float32 CPU layer"):
        quantize_linear(float_layer(32, 16).to(torch.bfloat16))
