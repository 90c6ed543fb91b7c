"""Gathered inputs -> a MiniMindVLM on a device and dtype: weights loaded strictly, or drawn fresh."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.checkpoint import load_weights
from mmv.device import pick_device, pick_dtype

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from mmv.loading.inputs import ModelInputs
    from mmv.model.vlm import MiniMindVLM


def build_model(
    inputs: ModelInputs,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    after_block: Callable[[MiniMindVLM, int], None] | None = None,
) -> MiniMindVLM:
    """The model `inputs` describe with its encoder attached; a fresh model's weights come from torch's seed.

    The mode is left as constructed (training mode); callers that only run the model set `.eval()`. A checkpoint
    is copied in on the CPU in float32 block by block, `after_block(model, i)` running after block i
    (`mmv.checkpoint.load_weights`), before the move to `device` and `dtype`.
    """
    import torch

    from mmv.model.vision import load_encoder
    from mmv.model.vlm import MiniMindVLM

    target = device if isinstance(device, torch.device) else pick_device(device)
    encoder = load_encoder(inputs.vision_dir) if inputs.vision_dir else None
    checkpoint = inputs.checkpoint
    if checkpoint is None or checkpoint.text_only:
        # drawn as constructed from torch's seed: a text-only file leaves the projector to these draws, and the same
        # seed must keep giving the same projector (and every run from it the same numbers)
        model = MiniMindVLM(inputs.config, encoder)
    else:
        model = MiniMindVLM.unfilled(inputs.config, encoder)
    if checkpoint is None:
        model.init_fresh_weights()
    else:
        load_weights(model, checkpoint, after_block)
    return model.to(device=target, dtype=pick_dtype(dtype, target))
