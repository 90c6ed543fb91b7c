"""Tiny random encoder folders of every family mmv runs, saved with `save_pretrained` like published ones.

Each is 32 wide with one layer, and its processor config is the one its family's public checkpoints ship, at a
small image size. `KINDS` names them: a CLIP vision tower, a whole two-tower CLIPModel, SigLIP, SigLIP2 NaFlex,
DINOv2 and DINOv2 with registers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WIDTH = 32
CLIP_NORM = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
IMAGENET_NORM = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
HALF_NORM = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
RESCALE = {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True}
KINDS = ("clip", "clip-full", "siglip", "siglip2", "dinov2", "dinov2-registers")


def tower(**sizes: Any) -> dict[str, Any]:
    return {
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        **sizes,
    }


def crop_processor(kind: str, side: int, norm: dict[str, list[float]]) -> dict[str, Any]:
    """CLIPImageProcessor / BitImageProcessor: resize the short side, crop the centre square."""
    return {
        "image_processor_type": kind,
        "do_resize": True,
        "size": {"shortest_edge": side},
        "do_center_crop": True,
        "crop_size": {"height": side, "width": side},
        "resample": 3,
        **RESCALE,
        **norm,
    }


def build(kind: str, side: int, patch: int, max_patches: int) -> tuple[Any, dict[str, Any]]:
    """The random model and its processor config."""
    import transformers

    if kind == "clip":
        config = transformers.CLIPVisionConfig(**tower(image_size=side, patch_size=patch))
        return transformers.CLIPVisionModel(config), crop_processor("CLIPImageProcessor", side, CLIP_NORM)
    if kind == "clip-full":
        text = {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
        config = transformers.CLIPConfig(
            text_config={
                **text,
                "vocab_size": 100,
                "max_position_embeddings": 16,
                "bos_token_id": 0,
                "eos_token_id": 2,
            },
            vision_config=tower(image_size=side, patch_size=patch),
            projection_dim=16,
        )
        return transformers.CLIPModel(config), crop_processor("CLIPImageProcessor", side, CLIP_NORM)
    if kind == "siglip":
        config = transformers.SiglipVisionConfig(**tower(image_size=side, patch_size=patch))
        processor = {
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": True,
            "size": {"height": side, "width": side},
            "resample": 3,
            **RESCALE,
            **HALF_NORM,
        }
        return transformers.SiglipVisionModel(config), processor
    if kind == "siglip2":
        config = transformers.Siglip2VisionConfig(**tower(patch_size=patch, num_patches=max_patches))
        processor = {
            "image_processor_type": "Siglip2ImageProcessor",
            "do_resize": True,
            "patch_size": patch,
            "max_num_patches": max_patches,
            "resample": 2,
            **RESCALE,
            **HALF_NORM,
        }
        return transformers.Siglip2VisionModel(config), processor
    if kind in ("dinov2", "dinov2-registers"):
        # the public checkpoints' config says 518 and their processor crops 224: the encoder interpolates
        sizes = tower(image_size=518, patch_size=patch)
        del sizes["intermediate_size"]
        if kind == "dinov2":
            model = transformers.Dinov2Model(transformers.Dinov2Config(**sizes, mlp_ratio=2))
        else:
            config = transformers.Dinov2WithRegistersConfig(**sizes, mlp_ratio=2, num_register_tokens=4)
            model = transformers.Dinov2WithRegistersModel(config)
        return model, crop_processor("BitImageProcessor", side, IMAGENET_NORM)
    raise AssertionError(f"unknown encoder kind {kind}")


def make_encoder_folder(
    folder: Path, kind: str, *, side: int = 64, patch: int = 16, max_patches: int = 64, seed: int = 0
) -> Path:
    """A random `kind` encoder at `folder`: `side`-pixel images (NaFlex: up to `max_patches`) in `patch` patches."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    model, processor = build(kind, side, patch, max_patches)
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder
