"""The MoE MLP: routing, renormalised top-k, the auxiliary load-balancing loss."""

from __future__ import annotations

import torch

from mmv.config import preset
from mmv.model.moe import MoEFeedForward


def test_top1_output_is_the_chosen_expert_alone():
    torch.manual_seed(0)
    moe = MoEFeedForward(preset("tiny-moe")).eval()
    x = torch.randn(2, 5, 64)
    chosen = moe.gate(x.reshape(-1, 64)).argmax(-1)
    expected = torch.stack([moe.experts[int(e)](row) for e, row in zip(chosen, x.reshape(-1, 64), strict=True)])
    torch.testing.assert_close(moe(x).reshape(-1, 64), expected, atol=1e-6, rtol=0)


def test_aux_loss_only_in_training_and_matches_formula():
    torch.manual_seed(0)
    config = preset("tiny-moe")
    moe = MoEFeedForward(config)
    x = torch.randn(3, 7, 64)
    moe.train()(x)
    probs = torch.softmax(moe.gate(x.reshape(-1, 64)), -1)
    routed = torch.nn.functional.one_hot(probs.argmax(-1), 4).float().mean(0)
    expected = (routed * probs.mean(0)).sum() * 4 * config.router_aux_loss_coef
    torch.testing.assert_close(moe.aux_loss, expected)
    moe.eval()(x)
    assert moe.aux_loss.item() == 0.0


def test_every_expert_gets_a_gradient_even_if_unused():
    torch.manual_seed(0)
    moe = MoEFeedForward(preset("tiny-moe")).train()
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[0] = 10.0  # everything routes to expert 0
    moe(torch.ones(1, 3, 64)).sum().backward()
    assert all(p.grad is not None for p in moe.parameters())
