# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The three vision projectors (REFERENCE.md section 2): encoder tokens -> 64 LLM embeddings per image.

Each keeps its reference parameter layout under `mlp.*`, which is how a checkpoint's variant is recognised.
"""

from __future__ import annotations

import torch
from torch import nn

from mmv.config import VLMConfig


class VisionProjector(nn.Module):
    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.variant = config.vision_variant
        width, hidden = config.projector_input_size, config.hidden_size
        if self.variant == "p16-naflex":
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        else:
            self.mlp = nn.Sequential(
                nn.LayerNorm(width, eps=1e-5), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden)
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: the encoder's last_hidden_state [N, tokens, D] -> [N, 64, hidden]."""
        return self.mlp(merge_tokens(features, self.variant))


def merge_tokens(features: torch.Tensor, variant: str) -> torch.Tensor:
    count, tokens, dim = features.shape
    if variant == "p32-256":
        return features
    if variant == "p16-naflex":
        # 4 consecutive tokens in raster order become one
        return features.reshape(count, tokens // 4, 4 * dim)
    # p16-256: 2x2 spatial merge of the 16x16 grid; channels ordered r0c0, r0c1, r1c0, r1c1
    side = int(tokens**0.5)
    grid = features.reshape(count, side // 2, 2, side // 2, 2, dim).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(count, (side // 2) ** 2, 4 * dim)
