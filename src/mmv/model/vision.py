"""The frozen vision encoder and its image processor: CLIP, SigLIP, SigLIP2 (NaFlex) and DINOv2 folders.

An encoder folder is read as data: config.json names the family (mmv.model.encoders), and only the transformers
classes named there are ever instantiated, so no code from a downloaded folder runs. The sizes come from the
config (transformers' defaults where it leaves them out), the image geometry from the processor it ships with:
SigLIP and CLIP take the size their position embeddings were trained for; DINOv2 interpolates its position
embeddings, so its images are the processor's centre crop (224 for the public checkpoints, whose config says 518);
NaFlex takes up to the processor's `max_num_patches`. The Pil processors are used because torchvision is not
required (and does not work beside the CPU torch wheel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import NAFLEX_FAMILY, VISION_PRESETS, VisionConfig, variant_of
from mmv.errors import MmvError
from mmv.layout import CONFIG_FILE, PREPROCESSOR_FILE, read_json_object
from mmv.model.encoders import ENCODER_TYPES

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

FAMILY_NAMES = "CLIP, SigLIP, SigLIP2 or DINOv2"
# transformers' own defaults for the sizes a config.json leaves out (tests/model/test_vision.py checks them)
CONFIG_DEFAULTS = {
    "clip": {"hidden_size": 768, "image_size": 224, "patch_size": 32},
    "siglip": {"hidden_size": 768, "image_size": 224, "patch_size": 16},
    "siglip2": {"hidden_size": 768, "patch_size": 16, "num_patches": 256},
    "dinov2": {"hidden_size": 768, "image_size": 224, "patch_size": 14},
}
# the Pil image processor of each family (DINOv2 ships a BitImageProcessor)
PROCESSORS = {
    "clip": ("transformers.models.clip.image_processing_pil_clip", "CLIPImageProcessorPil"),
    "siglip": ("transformers.models.siglip.image_processing_pil_siglip", "SiglipImageProcessorPil"),
    "siglip2": ("transformers.models.siglip2.image_processing_pil_siglip2", "Siglip2ImageProcessorPil"),
    "dinov2": ("transformers.models.bit.image_processing_pil_bit", "BitImageProcessorPil"),
}
UNUSED_WEIGHTS = ("head.", "mask_token")  # SigLIP's pooling head and DINOv2's mask token: never run by mmv


@dataclass(frozen=True)
class EncoderInfo:
    family: str
    model_type: str  # config.json's, which picks the transformers class
    hidden_size: int
    image_size: int | None  # the side of the images the processor makes; None for NaFlex
    patch_size: int
    max_patches: int | None  # NaFlex: the processor's max_num_patches

    @property
    def num_patches(self) -> int:
        return self.max_patches if self.max_patches is not None else (self.image_size // self.patch_size) ** 2

    @property
    def variant(self) -> str | None:
        """The reference variant whose encoder this is (same family and geometry), else None."""
        return next((name for name, p in VISION_PRESETS.items() if self.fits(p)), None)

    @property
    def label(self) -> str:
        return self.vision().encoder_label

    def fits(self, vision: VisionConfig) -> bool:
        """Whether this encoder makes the patches `vision` projects (its width is checked apart)."""
        return (self.family, self.image_size, self.patch_size, self.max_patches) == (
            vision.family,
            vision.image_size,
            vision.patch_size,
            vision.max_patches,
        )

    def vision(self, projector: str | None = None, merge: int | None = None) -> VisionConfig:
        """The vision config of a fresh projector over this encoder; what is not given follows the reference
        variant of the same geometry, else an ln-mlp projector without merge."""
        preset = VISION_PRESETS.get(self.variant or "")
        return VisionConfig(
            self.family,
            self.image_size,
            self.patch_size,
            self.max_patches,
            projector or (preset.projector if preset else "ln-mlp"),
            merge or (preset.merge if preset else 1),
        )


def inspect_encoder(folder: str | Path) -> EncoderInfo:
    """The family, sizes and image geometry of an encoder folder, from its config.json and processor config."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise MmvError(f"vision encoder folder {folder} has no {CONFIG_FILE}")
    config = read_json_object(path)
    model_type = config.get("model_type", "")
    if not isinstance(model_type, str) or model_type not in ENCODER_TYPES:
        shown = model_type if isinstance(model_type, str) and model_type else repr(model_type or "unknown")
        raise MmvError(f"{folder} holds a {shown} encoder; expected {FAMILY_NAMES}")
    family = ENCODER_TYPES[model_type][0]
    vision = config.get("vision_config", config)  # a two-tower checkpoint (CLIPModel, SiglipModel) nests it
    if not isinstance(vision, dict):
        raise MmvError(f"{path}: vision_config must be an object")
    sizes = dict(CONFIG_DEFAULTS[family])
    for name, default in sizes.items():
        value = vision.get(name, default)
        if type(value) is not int or value < 1:
            raise MmvError(f"{path}: {name} must be a positive integer, got {value!r}")
        sizes[name] = value
    processor = read_json_object(folder / PREPROCESSOR_FILE)
    with_processor = processor_geometry(folder / PREPROCESSOR_FILE, processor, family, sizes)
    return EncoderInfo(family, model_type, sizes["hidden_size"], patch_size=sizes["patch_size"], **with_processor)


def processor_geometry(path: Path, processor: dict[str, Any], family: str, sizes: dict[str, int]) -> dict[str, Any]:
    """The images the processor makes, checked against what the encoder takes: a wrong size cannot be allocated,
    or fails in the encoder."""
    patch = sizes["patch_size"]
    if family == NAFLEX_FAMILY:
        given, limit = processor.get("patch_size", patch), processor.get("max_num_patches", sizes["num_patches"])
        if given != patch or type(limit) is not int or not 1 <= limit <= sizes["num_patches"]:
            raise MmvError(
                f"{path}: patch_size {given!r} and max_num_patches {limit!r} do not fit the encoder "
                f"(patch {patch}, at most {sizes['num_patches']} patches)"
            )
        return {"image_size": None, "max_patches": limit}
    if family == "siglip":
        side = sizes["image_size"]
        size = processor.get("size", {"height": side, "width": side})
        if not isinstance(size, dict) or size.get("height") != side or size.get("width") != side:
            raise MmvError(f"{path}: size {size!r} does not match the encoder's {side}x{side} images")
        return {"image_size": side, "max_patches": None}
    # CLIP and DINOv2 resize the short side, then crop the centre square
    if processor.get("do_center_crop", True) is not True:
        raise MmvError(f"{path}: do_center_crop must be true, so that every image is one square size")
    crop = processor.get("crop_size", CONFIG_DEFAULTS[family]["image_size"])
    side = crop if type(crop) is int else crop.get("height") if isinstance(crop, dict) else None
    if type(side) is not int or side < 1 or (isinstance(crop, dict) and crop.get("width") != side):
        raise MmvError(f"{path}: crop_size {crop!r} is not a square size")
    if family == "clip" and side != sizes["image_size"]:
        raise MmvError(f"{path}: crop_size {side} does not match the encoder's {sizes['image_size']}px images")
    if side % patch:
        raise MmvError(f"{path}: crop_size {side} is not a whole number of the encoder's {patch}-pixel patches")
    return {"image_size": side, "max_patches": None}


def load_encoder(folder: str | Path) -> nn.Module:
    """The encoder's vision tower, frozen and in eval mode; a two-tower checkpoint's text tower is left unread."""
    import transformers
    from transformers.utils import logging as hf_logging

    info = inspect_encoder(folder)
    cls = getattr(transformers, ENCODER_TYPES[info.model_type][1])
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists a two-tower checkpoint's text weights as unexpected
    try:
        encoder, loading = cls.from_pretrained(str(folder), use_safetensors=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise MmvError(f"cannot load the vision encoder from {folder}: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(k for k in loading["missing_keys"] if not any(part in k for part in UNUSED_WEIGHTS))
    if missing:
        raise MmvError(f"the vision encoder in {folder} lacks {len(missing)} weight(s) such as {missing[0]}")
    for module in encoder.modules():
        # SigLIP's towers run their attention-pooling head on every call, and mmv reads the patch tokens before it:
        # 4% of a p32-256 encoder call over 8 images, for a vector nobody reads (its weights stay loaded)
        if getattr(module, "use_head", False):
            module.use_head = False
    encoder.requires_grad_(False)
    return encoder.eval()


class ImageProcessor:
    """PIL images -> the encoder's input tensors, batched."""

    def __init__(self, folder: str | Path) -> None:
        import importlib

        info = inspect_encoder(folder)
        self.family, self.variant = info.family, variant_of(info.vision())
        module, name = PROCESSORS[info.family]
        cls = getattr(importlib.import_module(module), name)
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
