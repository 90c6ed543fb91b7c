"""Adapters in a live model: injected by peft into mmv's own modules, read out, loaded, merged away.

peft replaces each targeted `nn.Linear` by its LoRA layer in place (the base weight moves to `<name>.base_layer`);
the model stays a MiniMindVLM, so the trainer, DDP and the resume checkpoints see ordinary parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mmv.adapters.spec import is_adapter_parameter
from mmv.errors import MmvError

if TYPE_CHECKING:
    from peft import LoraConfig
    from torch import nn

ADAPTER_NAME = "default"  # peft's name for a model's one adapter; files carry no name


def add_adapters(model: nn.Module, config: LoraConfig) -> list[str]:
    """Inject `config`'s adapters (freshly initialised, B = 0: the model is unchanged); return their parameter names.

    peft leaves only the adapters trainable; the caller decides what else trains.
    """
    from peft import inject_adapter_in_model

    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise MmvError(f"the adapter's targets do not fit the model: {str(exc).splitlines()[0][:300]}") from None
    return adapter_parameter_names(model)


def adapter_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if is_adapter_parameter(name)]


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights under the names peft saves them with (no adapter name; no file prefix yet)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}


def load_adapter_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load weights `adapter_tensors` wrote into a model injected with the same config; every one must land."""
    from peft import set_peft_model_state_dict

    with torch.no_grad():
        result = set_peft_model_state_dict(model, tensors, adapter_name=ADAPTER_NAME)
    unexpected = [k for k in result.unexpected_keys if is_adapter_parameter(k)]
    missing = [k for k in result.missing_keys if is_adapter_parameter(k)]
    if unexpected or missing:
        what = f"no place for {unexpected[0]}" if unexpected else f"no weights for {missing[0]}"
        raise MmvError(f"the adapter does not fit the model: {what}", option="adapter")


def merge_adapters(model: nn.Module) -> None:
    """Fold every adapter into its base weight (peft's merge, checked for NaN) and put the plain layer back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, layer in layers:
        try:
            layer.merge(safe_merge=True)
        except ValueError as exc:
            raise MmvError(f"merging the adapter of {name} failed: {exc}") from None
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
