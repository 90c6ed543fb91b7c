"""DecodeLinear computes what nn.Linear computes, on the few-row path and off it, with the same state dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmv.model.layers import DecodeLinear


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(2, 1, 48), (1, 4, 48), (3, 48), (4, 4, 48), (1, 1, 48), (40, 48)])
@pytest.mark.parametrize("bias", [False, True])
def test_every_row_count_gives_nn_linears_product(threads, shape, bias):
    torch.manual_seed(0)
    plain = nn.Linear(48, 24, bias=bias)
    decode = DecodeLinear(48, 24, bias=bias)
    decode.load_state_dict(plain.state_dict())
    x = torch.randn(shape)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            got, expected = decode(x), plain(x)
    finally:
        torch.set_num_threads(previous)
    assert got.shape == expected.shape == (*shape[:-1], 24)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_training_keeps_linears_gradients():
    torch.manual_seed(0)
    plain = nn.Linear(16, 8)
    decode = DecodeLinear(16, 8)
    decode.load_state_dict(plain.state_dict())
    x = torch.randn(3, 16)
    decode(x).square().sum().backward()
    plain(x).square().sum().backward()
    torch.testing.assert_close(decode.weight.grad, plain.weight.grad)
    assert list(decode.state_dict()) == list(plain.state_dict())
