"""A tiny random vision encoder folder (SigLIP, CLIP or DINOv2 with registers), for training from scratch offline.

The folder looks like a downloaded encoder (config.json, model.safetensors, preprocessor_config.json), so the rest
of mmv loads it through the same code path. Every family sees its images on the grid the synthetic scenes are drawn
on (8x8 = 64 patch tokens, mmv.synth.scenes): 256x256 images in 32-pixel patches by default, or 128x128 in
16-pixel patches for the video task's 128-pixel frames and the high-resolution task's 128-pixel views (no resize,
and a quarter of the pixels to process; that task's projector merges them 2x2 into 16 tokens a view), each with its
own processor's normalisation. Its weights are random: train it with `--train-vision`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmv.errors import MmvError
from mmv.fsio import staged_folder

IMAGE_SIZE = 256
GRID = 8  # patches a side at every image size: the scenes' 8x8 cells
FAMILIES = ("siglip", "clip", "dinov2")
# CLIP's pre-layernorm pins every embedding to one norm, so a patch's signal cannot grow against what the blocks add
# to the residual stream. Trained from scratch at the demo's rates, its patch tokens nearly collapsed to one vector
# while the LLM first learnt the captions (their spread across an image fell to a seventh of SigLIP's, then stayed
# at a third or less), and shape and count stayed near chance. The same CLIP without its pre-layernorm does not
# collapse. An epsilon above the embeddings' variance (about 3 at initialisation) makes its layer norms scale rather
# than normalise at first, which keeps the spread near SigLIP's. At 100 it did not learn shapes in the full run (the
# blocks' norms shrink the MLPs' inputs towards GELU's linear part, likely why) (BENCHMARKS.md, other encoders).
CLIP_LAYER_NORM_EPS = 10.0
_RESCALE = {"do_convert_rgb": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}


def preprocessor_config(family: str, side: int = IMAGE_SIZE) -> dict[str, Any]:
    """The family's processor as its public checkpoints ship it, for `side`-pixel square images."""
    square = {"height": side, "width": side}
    crop = {"do_resize": True, "size": {"shortest_edge": side}, "do_center_crop": True, "crop_size": square}
    if family == "siglip":
        # SiglipImageProcessor: mean = std = 0.5 (REFERENCE.md section 2), a plain resize
        return {
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": True,
            "size": square,
            **_RESCALE,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
    if family == "clip":
        return {
            "image_processor_type": "CLIPImageProcessor",
            **crop,
            **_RESCALE,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
        }
    if family == "dinov2":
        return {
            "image_processor_type": "BitImageProcessor",
            **crop,
            **_RESCALE,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        }
    raise MmvError(f"unknown tiny encoder family {family!r}; expected one of {', '.join(FAMILIES)}")


PREPROCESSORS = {family: preprocessor_config(family) for family in FAMILIES}


@dataclass(frozen=True)
class TinyEncoderConfig:
    hidden_size: int = 64  # the projector's input width (image_hidden_size)
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    seed: int = 0  # the random initialisation is deterministic for a seed
    family: str = "siglip"  # siglip | clip | dinov2 (with 4 register tokens)
    image_size: int = IMAGE_SIZE  # the side of its square images, a multiple of GRID
    patch_size: int | None = None  # None: image_size / GRID, the scenes' 8x8 grid at any image size

    def __post_init__(self) -> None:
        if self.image_size < GRID or self.image_size % GRID:
            raise MmvError(f"the tiny encoder's image size must be a multiple of {GRID}, got {self.image_size}")
        if self.patch_size is not None and (self.patch_size < 1 or self.image_size % self.patch_size):
            raise MmvError(f"the tiny encoder's patch size must divide its image size, got {self.patch_size}")

    @property
    def patch(self) -> int:
        return self.patch_size or self.image_size // GRID


def encoder_model(config: TinyEncoderConfig) -> Any:
    """A randomly initialised transformers vision model of `config.family` (from torch's current seed)."""
    import transformers

    sizes = {
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "image_size": config.image_size,
        "patch_size": config.patch,
    }
    if config.family == "siglip":
        # the pooling head is never used: no dead weights
        vision = transformers.SiglipVisionConfig(
            **sizes, intermediate_size=config.intermediate_size, vision_use_head=False
        )
        return transformers.SiglipVisionModel(vision)
    if config.family == "clip":
        vision = transformers.CLIPVisionConfig(
            **sizes, intermediate_size=config.intermediate_size, layer_norm_eps=CLIP_LAYER_NORM_EPS
        )
        return transformers.CLIPVisionModel(vision)
    if config.family == "dinov2":
        ratio = config.intermediate_size // config.hidden_size
        vision = transformers.Dinov2WithRegistersConfig(**sizes, mlp_ratio=ratio, num_register_tokens=4)
        return transformers.Dinov2WithRegistersModel(vision)
    raise MmvError(f"unknown tiny encoder family {config.family!r}; expected one of {', '.join(FAMILIES)}")


def make_encoder(out_dir: str | Path, config: TinyEncoderConfig | None = None) -> Path:
    """Write a randomly initialised encoder (`config.image_size` images, by default 8x8 = 64 patches) to `out_dir`."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = config or TinyEncoderConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = encoder_model(config)
    with staged_folder(out_dir) as staged:
        model.save_pretrained(str(staged), safe_serialization=True)
        text = json.dumps(preprocessor_config(config.family, config.image_size), indent=2) + "\n"
        (staged / "preprocessor_config.json").write_text(text)
    return Path(out_dir)
