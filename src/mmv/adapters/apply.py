"""An adapter applied to a base model: checked to fit, injected through peft, and merged into the weights.

What `mmv chat`, `mmv eval`, `mmv serve`, `mmv convert` and `--init` load from a LoRA run (or a base with an
adapter) is the merged model: ordinary weights in the reference layout, so every later step (fast decoding, export)
is the one a fully trained model takes. Merging happens in memory, in float32; no file is ever changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.adapters.files import Adapter, read_adapter
from mmv.adapters.inject import add_adapters, load_adapter_tensors, merge_adapters
from mmv.errors import MmvError
from mmv.layout import reading

if TYPE_CHECKING:
    import torch

    from mmv.checkpoint import Checkpoint
    from mmv.config import VLMConfig
    from mmv.model.vlm import MiniMindVLM

LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_magnitude_vector)$")


def check_fit(model: MiniMindVLM, adapter: Adapter, base_name: str) -> None:
    """Every adapter weight belongs to a linear layer of the base model with the sizes it was trained for."""
    from torch import nn

    modules = dict(model.named_modules())
    for key, tensor in adapter.lora.items():
        match = LORA_KEY.match(key)
        if match is None:
            raise MmvError(f"{adapter.folder}: {key} is not a LoRA weight mmv can apply", option="adapter")
        name, part = match["module"], match["part"]
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear):
            raise MmvError(
                f"the adapter {adapter.folder} does not fit {base_name}: it adapts {name}, which that model "
                "does not have",
                option="adapter",
            )
        expected = {
            "lora_A.weight": (adapter.config.r, layer.in_features),
            "lora_B.weight": (layer.out_features, adapter.config.r),
            "lora_magnitude_vector": (layer.out_features,),
        }[part]
        if tuple(tensor.shape) != expected:
            raise MmvError(
                f"the adapter {adapter.folder} does not fit {base_name}: its {key} has shape "
                f"{tuple(tensor.shape)}, but that layer there takes {expected} ({layer.in_features} -> "
                f"{layer.out_features}, rank {adapter.config.r})",
                option="adapter",
            )


def apply_adapter(model: MiniMindVLM, adapter: Adapter, base_name: str) -> None:
    """Inject `adapter` into `model` and load its weights, projector included; nothing is merged yet."""
    import torch

    check_fit(model, adapter, base_name)
    add_adapters(model, adapter.injection_config)
    load_adapter_tensors(model, adapter.lora)
    if adapter.projector:
        own = model.vision_proj.state_dict()
        with torch.no_grad():
            for key, tensor in adapter.projector.items():
                own[key.removeprefix("vision_proj.")].copy_(tensor)


def merged_checkpoint(base: Checkpoint, adapters: tuple[Path, ...], encoder_hidden: int | None) -> Checkpoint:
    """`base` with each adapter applied and merged in turn; the weights keep the base's dtype."""
    from mmv.checkpoint import Checkpoint

    state, config, source = base.state_dict, base.config, base.source
    for path in adapters:
        adapter = read_adapter(path)
        state, config = merge_one(state, config, adapter, encoder_hidden, source.name)
        source = adapter.folder
    text_only = "vision_proj.mlp.0.weight" not in state
    return Checkpoint(state, config, text_only, source)


def merge_one(
    state: dict[str, torch.Tensor], config: VLMConfig, adapter: Adapter, encoder_hidden: int | None, base_name: str
) -> tuple[dict[str, torch.Tensor], VLMConfig]:
    from mmv.checkpoint import Checkpoint, expected_shapes, infer_config, load_weights
    from mmv.model.vlm import MiniMindVLM

    dtype = state["model.embed_tokens.weight"].dtype
    state = {**state, **adapter.projector}  # the adapter's trained projector replaces the base's
    with reading(adapter.folder):
        config = infer_config(state, config, encoder_hidden)  # a text-only base gets its variant from the adapter
    text_only = "vision_proj.mlp.0.weight" not in state
    expected = expected_shapes(config, text_only)
    for key, tensor in adapter.projector.items():
        if tuple(tensor.shape) != expected.get(key):
            raise MmvError(
                f"the adapter {adapter.folder} does not fit {base_name}: its {key} has shape {tuple(tensor.shape)}, "
                f"but that model's projector takes {expected.get(key)}",
                option="adapter",
            )
    model = MiniMindVLM(config)  # float32: the merge is exact there whatever the base's dtype
    load_weights(model, Checkpoint(state, config, text_only, adapter.folder))
    apply_adapter(model, adapter, base_name)
    merge_adapters(model)
    merged = {k: v.detach().to(dtype) for k, v in model.checkpoint_state_dict().items()}
    if text_only:
        merged = {k: v for k, v in merged.items() if not k.startswith("vision_proj.")}
    return merged, config
