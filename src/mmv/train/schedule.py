"""The learning-rate schedule: the reference's cosine from lr down to lr/10, after an optional linear warmup."""

from __future__ import annotations

import math


def reference_lr(base: float, step: float, total: float) -> float:
    """lr * (0.1 + 0.45 * (1 + cos(pi * t / T))): `base` at t=0, base/10 at t=T."""
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 1.0
    return base * (0.1 + 0.45 * (1.0 + math.cos(math.pi * fraction)))


def lr_at(base: float, step: float, total: float, warmup: int = 0) -> float:
    """The lr for optimizer step `step` (0-based) of `total`.

    Steps may be fractional: the trainer counts them as samples seen / global batch, so a run resumed with another
    world size continues on the same curve (the reference rescales its step counter the same way).
    """
    if warmup > 0 and step < warmup:
        return reference_lr(base, 0.0, 1.0) * min(1.0, (step + 1) / warmup)
    return reference_lr(base, step - warmup, total - warmup)
