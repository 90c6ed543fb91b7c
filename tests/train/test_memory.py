"""The start-of-run memory estimate: the right parts, and --grad-checkpoint shrinks the activations."""

from __future__ import annotations

from mmv.config import preset
from mmv.train.memory import estimate


def test_estimate_parts_for_the_full_size_model():
    config = preset("minimind-3v")
    total, trainable = 64_000_000 + 94_600_000, 64_000_000
    full = estimate(config, total, trainable, batch_size=4, seq_len=768, compute_bytes=4, grad_checkpoint=False)
    assert full.weights == 4 * total and full.gradients == 4 * trainable and full.optimizer == 8 * trainable
    # 8 blocks x 3072 tokens of hidden 768 plus the 6400-wide logits: between 0.5 and 4 GiB in float32
    assert 2**29 < full.activations < 2**32
    checkpointed = estimate(config, total, trainable, 4, 768, 4, grad_checkpoint=True)
    assert checkpointed.activations < full.activations / 2 and checkpointed.total < full.total
    half = estimate(config, total, trainable, 4, 768, 2, grad_checkpoint=False)
    assert half.activations < full.activations
