"""A tiny random SigLIP vision encoder folder in the p32-256 layout, for training from scratch offline.

The folder looks like a downloaded encoder (config.json, model.safetensors, preprocessor_config.json), so the rest
of mmv loads it through the same code path. Its weights are random: train it with `--train-vision`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmv.fsio import staged_folder

# SiglipImageProcessor at 256x256: rescale 1/255, mean = std = 0.5 (REFERENCE.md section 2), bicubic resize.
PREPROCESSOR = {
    "image_processor_type": "SiglipImageProcessor",
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"height": 256, "width": 256},
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


@dataclass(frozen=True)
class TinyEncoderConfig:
    hidden_size: int = 64  # the projector's input width (image_hidden_size)
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    seed: int = 0  # the random initialisation is deterministic for a seed


def make_encoder(out_dir: str | Path, config: TinyEncoderConfig | None = None) -> Path:
    """Write a randomly initialised SigLIP encoder (patch 32, 256x256 -> 64 tokens) to `out_dir`."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = config or TinyEncoderConfig()
    vision_config = SiglipVisionConfig(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        image_size=256,
        patch_size=32,
        vision_use_head=False,  # the pooling head is never used: no dead weights
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SiglipVisionModel(vision_config)
    with staged_folder(out_dir) as staged:
        model.save_pretrained(str(staged), safe_serialization=True)
        (staged / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    return Path(out_dir)
