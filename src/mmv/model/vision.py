"""The frozen vision encoder and its image processor, loaded with transformers' SigLIP / SigLIP2 classes.

Only the classes named here are ever instantiated, so no code from a downloaded folder runs. The Pil
processors are used because torchvision is not required (and does not work beside the CPU torch wheel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError
from mmv.layout import CONFIG_FILE, PREPROCESSOR_FILE, read_json_object

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn


@dataclass(frozen=True)
class EncoderInfo:
    variant: str
    hidden_size: int
    image_size: int  # the side SigLIP's position embeddings were trained for (fixed-resolution variants)
    patch_size: int
    num_patches: int  # position embeddings: the grid of a fixed-resolution encoder, the most NaFlex patches


def inspect_encoder(folder: str | Path) -> EncoderInfo:
    """Tell the vision variant and sizes of an encoder folder from its config.json alone."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise MmvError(f"vision encoder folder {folder} has no {CONFIG_FILE}")
    config = read_json_object(path)
    config = config.get("vision_config", config)  # a full SigLIP checkpoint nests the vision tower
    if not isinstance(config, dict):
        raise MmvError(f"{path}: vision_config must be an object")
    model_type = config.get("model_type", "")
    if not isinstance(model_type, str):
        model_type = repr(model_type)
    if model_type.startswith("siglip2"):
        variant = "p16-naflex"
    elif model_type.startswith("siglip"):
        variant = "p32-256" if config.get("patch_size") == 32 else "p16-256"
    else:
        raise MmvError(
            f"{folder} holds a {model_type or 'unknown'} encoder; expected SigLIP or SigLIP2 "
            "(CLIP-era MiniMind2-V encoders are not supported)"
        )
    # transformers' own defaults for fields a config leaves out
    sizes = {"hidden_size": 768, "image_size": 224, "patch_size": 16, "num_patches": 256}
    for name, default in sizes.items():
        value = config.get(name, default)
        if type(value) is not int or value < 1:
            raise MmvError(f"{path}: {name} must be a positive integer, got {value!r}")
        sizes[name] = value
    if variant != "p16-naflex":
        sizes["num_patches"] = (sizes["image_size"] // sizes["patch_size"]) ** 2
    return EncoderInfo(variant, **sizes)


def check_processor(folder: Path, info: EncoderInfo) -> None:
    """The processor must produce what the encoder takes: a wrong size cannot be allocated, or fails in the encoder."""
    path = folder / PREPROCESSOR_FILE
    config = read_json_object(path)
    if info.variant == "p16-naflex":
        patch = config.get("patch_size", info.patch_size)
        limit = config.get("max_num_patches", info.num_patches)
        if patch != info.patch_size or type(limit) is not int or not 1 <= limit <= info.num_patches:
            raise MmvError(
                f"{path}: patch_size {patch!r} and max_num_patches {limit!r} do not fit the encoder "
                f"(patch {info.patch_size}, at most {info.num_patches} patches)"
            )
        return
    size = config.get("size", {"height": info.image_size, "width": info.image_size})
    side = info.image_size
    if not isinstance(size, dict) or size.get("height") != side or size.get("width") != side:
        raise MmvError(f"{path}: size {size!r} does not match the encoder's {side}x{side} images")


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

        info = inspect_encoder(folder)
        check_processor(Path(folder), info)
        self.variant = info.variant
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
