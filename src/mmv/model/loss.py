# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The training objective, defined once: next-token cross-entropy over the supervised positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label of every position that is not supervised (prompt, image placeholders, padding)


def shifted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of position t's logits against the label at t + 1, in float32; IGNORE_INDEX labels are skipped.

    `reduction` is "mean" (over supervised tokens), "sum", or "none" ([B, T - 1], zero where ignored).
    """
    shifted = logits[:, :-1]
    loss = F.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )
    return loss.view(labels.shape[0], -1) if reduction == "none" else loss
