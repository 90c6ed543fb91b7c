"""Which parameters train: the reference's freeze modes plus the encoder for training from scratch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.adapters.spec import is_adapter_parameter
from mmv.errors import MmvError

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM

PROJECTOR = "vision_proj."
ENCODER = "vision_encoder."


def trainable_prefixes(mode: str, num_layers: int, train_vision: bool) -> tuple[str, ...]:
    """Parameter-name prefixes that train under a freeze mode.

    projector: the projector only (pretrain); ends: the projector + the first and last LLM block (SFT, the
    reference's freeze 1); none: the whole LLM (embeddings, all blocks, final norm, tied head) + the projector.
    """
    if mode == "projector":
        prefixes: tuple[str, ...] = (PROJECTOR,)
    elif mode == "ends":
        ends = sorted({0, num_layers - 1})
        prefixes = (PROJECTOR, *(f"model.layers.{i}." for i in ends))
    elif mode == "none":
        prefixes = (PROJECTOR, "model.", "lm_head.")
    else:
        raise MmvError(f"unknown freeze mode {mode!r}; expected projector, ends or none")
    return (*prefixes, ENCODER) if train_vision else prefixes


def apply_freeze(model: MiniMindVLM, mode: str, train_vision: bool, adapters: bool = False) -> list[str]:
    """Set requires_grad by mode; return the trainable parameter names. The encoder trains only on request.

    With `adapters` (a --lora run) the adapters and the projector train and `mode` does not apply."""
    if train_vision and model.vision_encoder is None:
        raise MmvError("training the vision encoder needs one", option=("train_vision", "vision"))
    prefixes = trainable_prefixes("projector" if adapters else mode, model.config.num_hidden_layers, train_vision)
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes) or (adapters and is_adapter_parameter(name)))
        if param.requires_grad:
            names.append(name)
    if model.vision_encoder is not None:
        model.vision_encoder.train(train_vision)
    return names
