"""PackedLinear computes what nn.Linear computes, shares its parameters, and steps aside where the copy cannot serve."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmv.decoding import prefill
from mmv.model.fast_decode import FastDecoder
from mmv.model.layers import DecodeLinear
from mmv.model.packed import PackedLinear, pack_linears, packing_supported
from tests.conftest import load_fixture_model


def packed_pair(bias: bool) -> tuple[nn.Linear, PackedLinear]:
    torch.manual_seed(0)
    plain = nn.Linear(48, 24, bias=bias)
    decode = DecodeLinear(48, 24, bias=bias)
    decode.load_state_dict(plain.state_dict())
    return plain, PackedLinear(decode)


def test_the_pinned_torch_has_onednns_packing():
    # the server's batched speed rests on these two operators; a torch without them would fall back silently
    assert packing_supported()
    assert hasattr(torch.ops.mkldnn, "_linear_pointwise")


@pytest.mark.parametrize("shape", [(1, 48), (2, 1, 48), (8, 1, 48), (3, 5, 48), (40, 48), (0, 48)])
@pytest.mark.parametrize("bias", [False, True])
def test_every_row_count_gives_nn_linears_product(shape, bias):
    plain, packed = packed_pair(bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        got, expected = packed(x), plain(x)
    assert got.shape == expected.shape == (*shape[:-1], 24)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_training_uses_the_float_weight_and_gets_its_gradients():
    plain, packed = packed_pair(bias=True)
    x = torch.randn(3, 48)
    packed(x).square().sum().backward()
    plain(x).square().sum().backward()
    torch.testing.assert_close(packed.weight.grad, plain.weight.grad)


def test_a_weight_changed_in_place_is_not_read_from_the_stale_copy():
    plain, packed = packed_pair(bias=False)
    with torch.no_grad():
        packed.weight.mul_(2)
        plain.weight.mul_(2)
    x = torch.randn(8, 48)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), plain(x))
    assert packed.stale


def test_packing_a_model_keeps_its_parameters_and_its_answers():
    model = load_fixture_model("p32")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    parameters = [id(p) for p in model.parameters()]
    ids = torch.tensor([[1, 832, 311, 234, 107, 108], [1, 1388, 570, 400, 401, 402]])
    with torch.inference_mode():
        expected = model(ids).logits
        swapped = pack_linears(model)
        got = model(ids).logits
    layers = model.config.num_hidden_layers
    assert swapped == layers * 7 + 1  # q k v o gate up down per block, and the output head
    assert sum(isinstance(m, PackedLinear) for m in model.modules()) == swapped
    assert [id(p) for p in model.parameters()] == parameters  # shared, not copied
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in before.items())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the tie survives
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert pack_linears(model) == 0  # packed once


def test_a_packed_models_single_row_decode_keeps_the_fast_path():
    model = load_fixture_model("p32")
    pack_linears(model)
    with torch.inference_mode():
        decoding = prefill(model, [[1, 832, 311, 234]], 4)
        assert isinstance(decoding.fast, FastDecoder)
        fast = decoding.step(torch.tensor([107]))
        modules = prefill(model, [[1, 832, 311, 234]], 4, fast_decode=False)
        torch.testing.assert_close(fast, modules.step(torch.tensor([107])), atol=1e-4, rtol=1e-4)
