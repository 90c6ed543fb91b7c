# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The vision projector (REFERENCE.md section 2): the encoder's patch tokens -> image tokens of the LLM's width.

A merge stacks neighbouring patches into one token first; then `linear`, `mlp` or `ln-mlp` maps it. The layers
sit under `mlp.*` in the reference's layout, which is how a checkpoint's projector is recognised: p32-256 and
p16-256 are `ln-mlp` (merge 1 and 2x2), p16-naflex is `mlp` over 4 consecutive NaFlex patches.
"""

from __future__ import annotations

import torch
from torch import nn

from mmv.config import VLMConfig


class VisionProjector(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        vision = config.vision
        assert vision is not None  # VLMConfig settles it
        self.merge, self.raster = vision.merge, vision.naflex
        width, hidden = config.projector_input_size, config.hidden_size
        layers: list[nn.Module] = [nn.Linear(width, hidden)]
        if vision.projector != "linear":
            layers += [nn.GELU(), nn.Linear(hidden, hidden)]
        if vision.projector == "ln-mlp":
            layers.insert(0, nn.LayerNorm(width, eps=1e-5))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: the encoder's patch tokens [N, patches, D] -> [N, tokens per image, hidden]."""
        return self.mlp(merge_tokens(features, self.merge, self.raster))


def merge_tokens(features: torch.Tensor, merge: int, raster: bool) -> torch.Tensor:
    """Stack patches into projector tokens: `merge` consecutive ones (raster, NaFlex), or each merge x merge block
    of the square patch grid, channels ordered r0c0, r0c1, ..., r1c0, ... and blocks in row-major order."""
    count, tokens, dim = features.shape
    if merge == 1:
        return features
    if raster:
        return features.reshape(count, tokens // merge, merge * dim)
    side = int(tokens**0.5)
    cells = side // merge
    grid = features.reshape(count, cells, merge, cells, merge, dim).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(count, cells * cells, merge * merge * dim)
