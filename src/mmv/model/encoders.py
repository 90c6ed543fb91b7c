# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""The vision encoder families: the transformers class that runs an encoder folder, and which outputs are patches.

An encoder folder's config.json names its `model_type`: a vision tower (`clip_vision_model`) or a whole two-tower
checkpoint (`clip`), whose vision tower the same class loads. In every family the class's `last_hidden_state`
feeds the projector, patch tokens only:
- SigLIP / SigLIP2: after the post-layernorm (REFERENCE.md section 2); there are no other tokens.
- CLIP: the last layer's output, which has no post-layernorm (CLIP applies it to the pooled class token alone, the
  way MiniMind2-V took its features); the class token in front is dropped.
- DINOv2: after its final layernorm; the class token and, with registers, `num_register_tokens` more are dropped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# config.json model_type -> (family, the transformers class that loads its vision tower)
ENCODER_TYPES = {
    "clip": ("clip", "CLIPVisionModel"),
    "clip_vision_model": ("clip", "CLIPVisionModel"),
    "siglip": ("siglip", "SiglipVisionModel"),
    "siglip_vision_model": ("siglip", "SiglipVisionModel"),
    "siglip2": ("siglip2", "Siglip2VisionModel"),
    "siglip2_vision_model": ("siglip2", "Siglip2VisionModel"),
    "dinov2": ("dinov2", "Dinov2Model"),
    "dinov2_with_registers": ("dinov2", "Dinov2WithRegistersModel"),
}


def leading_tokens(encoder_config: Any) -> int:
    """Tokens in front of the patches in the encoder's `last_hidden_state` (class and register tokens)."""
    family = ENCODER_TYPES[encoder_config.model_type][0]
    if family == "clip":
        return 1
    if family == "dinov2":
        return 1 + getattr(encoder_config, "num_register_tokens", 0)
    return 0


def patch_features(encoder: nn.Module, pixel_inputs: dict[str, Any]) -> torch.Tensor:
    """Processor output for N images -> the encoder's patch tokens [N, patches, width]."""
    hidden = encoder(**pixel_inputs).last_hidden_state
    return hidden[:, leading_tokens(encoder.config) :]
