"""QLoRA's frozen base: the blocks' linear layers held in 4-bit NF4 by bitsandbytes (double quantisation).

Only the layers adapters may target are quantised (attention q/k/v/o, the MLP or experts' gate/up/down); the
embeddings, norms, MoE routers, projector and encoder keep their precision. The base weights are read from --init
again on every start and quantised the same way, so a resumed run continues on the same 4-bit base.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mmv.adapters.spec import ATTENTION, MLP, target_pattern
from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch
    from torch import nn

# 4 bits a weight plus one float32 scale per block of 64 (about what double quantisation keeps)
NF4_BYTES = 0.5 + 4 / 64


QLORA_DEVICES = ("cuda", "cpu")  # where bitsandbytes' 4-bit NF4 runs (bitsandbytes 0.50 runs it on the CPU too)


def check_qlora(device: torch.device) -> None:
    """One sentence where QLoRA cannot run: bitsandbytes missing, or a device its 4-bit kernels do not cover."""
    if device.type not in QLORA_DEVICES:
        raise MmvError(
            f"QLoRA keeps the base in 4-bit with bitsandbytes, whose kernels run on CUDA or the CPU, but this run "
            f"is on {device.type}; train plain LoRA instead (the base then stays in full precision)",
            option=("qlora", "device"),
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MmvError(
            "QLoRA needs bitsandbytes, which is not installed: pip install 'mmv[qlora]'", option="qlora"
        ) from None


def quantize_base(model: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> int:
    """Swap every targetable linear layer of the blocks for an NF4 `Linear4bit` and move the model to `device`
    (bitsandbytes quantises as the weights arrive there); return the number of weights now held in 4 bits."""
    import bitsandbytes as bnb
    from torch import nn

    pattern = re.compile(target_pattern((*ATTENTION, *MLP)))
    count = 0
    for name, module in list(model.named_modules()):
        if not (isinstance(module, nn.Linear) and pattern.fullmatch(name)):
            continue
        quantized = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=compute_dtype,
            compress_statistics=True,
            quant_type="nf4",
        )
        quantized.weight = bnb.nn.Params4bit(
            module.weight.data.to(compute_dtype), requires_grad=False, compress_statistics=True, quant_type="nf4"
        )
        if module.bias is not None:
            quantized.bias = nn.Parameter(module.bias.data, requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, quantized)
        count += module.weight.numel()
    model.to(device)
    return count


def logical_numel(param: torch.Tensor) -> int:
    """Weights a parameter stands for: a 4-bit one packs two in each stored byte."""
    state = getattr(param, "quant_state", None)
    return int(state.shape.numel()) if state is not None else param.numel()


def quantized_numel(model: nn.Module) -> int:
    return sum(logical_numel(p) for p in model.parameters() if getattr(p, "quant_state", None) is not None)
