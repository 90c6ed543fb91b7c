"""Gathered inputs -> a MiniMindVLM on a device and dtype: weights loaded strictly, or drawn fresh."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.checkpoint import load_weights
from mmv.device import pick_device, pick_dtype

if TYPE_CHECKING:
    import torch

    from mmv.loading.inputs import ModelInputs
    from mmv.model.vlm import MiniMindVLM


def build_model(inputs: ModelInputs, device: str | torch.device = "cpu", dtype: str = "float32") -> MiniMindVLM:
    """The model `inputs` describe with its encoder attached; a fresh model's weights come from torch's seed.

    The mode is left as constructed (training mode); callers that only run the model set `.eval()`.
    """
    import torch

    from mmv.model.vision import load_encoder
    from mmv.model.vlm import MiniMindVLM

    target = device if isinstance(device, torch.device) else pick_device(device)
    model = MiniMindVLM(inputs.config, load_encoder(inputs.vision_dir) if inputs.vision_dir else None)
    if inputs.checkpoint is None:
        model.init_fresh_weights()
    else:
        load_weights(model, inputs.checkpoint)
    return model.to(device=target, dtype=pick_dtype(dtype, target))
