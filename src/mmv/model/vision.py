"""The frozen vision encoder and its image processor, loaded with transformers' SigLIP / SigLIP2 classes.

Only the classes named here are ever instantiated, so no code from a downloaded folder runs. The Pil
processors are used because torchvision is not required (and does not work beside the CPU torch wheel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn


@dataclass(frozen=True)
class EncoderInfo:
    variant: str
    hidden_size: int


def inspect_encoder(folder: str | Path) -> EncoderInfo:
    """Tell the vision variant and hidden size of an encoder folder from its config.json alone."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise MmvError(f"vision encoder folder {folder} has no config.json")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MmvError(f"cannot read {path}: {exc}") from None
    config = config.get("vision_config", config)  # a full SigLIP checkpoint nests the vision tower
    model_type = config.get("model_type", "")
    if model_type.startswith("siglip2"):
        variant = "p16-naflex"
    elif model_type.startswith("siglip"):
        variant = "p32-256" if config.get("patch_size") == 32 else "p16-256"
    else:
        raise MmvError(
            f"{folder} holds a {model_type or 'unknown'} encoder; expected SigLIP or SigLIP2 "
            "(CLIP-era MiniMind2-V encoders are not supported)"
        )
    return EncoderInfo(variant, int(config.get("hidden_size", 768)))


def load_encoder(folder: str | Path) -> nn.Module:
    """The encoder's vision tower, frozen and in eval mode."""
    from transformers import Siglip2VisionModel, SiglipVisionModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    info = inspect_encoder(folder)
    cls = Siglip2VisionModel if info.variant == "p16-naflex" else SiglipVisionModel
    try:
        encoder = cls.from_pretrained(str(folder), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise MmvError(f"cannot load the vision encoder from {folder}: {str(exc).splitlines()[0]}") from None
    encoder.requires_grad_(False)
    return encoder.eval()


class ImageProcessor:
    """PIL images -> the encoder's input tensors, batched."""

    def __init__(self, folder: str | Path) -> None:
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
        from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

        self.variant = inspect_encoder(folder).variant
        cls = Siglip2ImageProcessorPil if self.variant == "p16-naflex" else SiglipImageProcessorPil
        try:
            self.processor = cls.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise MmvError(f"cannot load the image processor from {folder}: {str(exc).splitlines()[0]}") from None

    def __call__(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        return dict(self.processor(images=rgb, return_tensors="pt"))


def encoder_inputs_to(inputs: dict[str, Any], device: torch.device | str, dtype: torch.dtype) -> dict[str, Any]:
    """Move processor output to a device; only floating tensors take the model dtype."""
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
