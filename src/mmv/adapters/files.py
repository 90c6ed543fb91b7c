"""An adapter folder in peft's layout: `adapter_config.json` + `adapter_model.safetensors`.

Keys are what `PeftModel.save_pretrained` writes for mmv's module names: `base_model.model.<module>.lora_A.weight`,
`...lora_B.weight` (DoRA adds `...lora_magnitude_vector`), and the projector, trained in full, as peft's
`modules_to_save`: `base_model.model.vision_proj.<its own keys>`. So `PeftModel.from_pretrained` applies the folder to
the generated transformers model, and mmv reads folders peft wrote. Only safetensors are read: no pickle runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.adapters.peft_config import parse_config
from mmv.adapters.spec import (
    ADAPTER_DIR,
    ADAPTER_MARK,
    CONFIG_NAME,
    FILE_PREFIX,
    PROJECTOR_MODULE,
    WEIGHTS_NAME,
    AdapterSpec,
)
from mmv.errors import MmvError
from mmv.layout import read_json_object, reading

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from torch import nn


@dataclass
class Adapter:
    folder: Path
    config: LoraConfig  # as the file says, projector (modules_to_save) included
    lora: dict[str, torch.Tensor]  # peft's names without the file prefix: model.layers.0.self_attn.q_proj.lora_A.weight
    projector: dict[str, torch.Tensor]  # the checkpoint layout: vision_proj.mlp.0.weight, ...

    @property
    def injection_config(self) -> LoraConfig:
        """The config mmv injects with: the adapters alone (the projector is loaded as plain weights)."""
        import dataclasses

        return dataclasses.replace(self.config, modules_to_save=None)


def find_adapter(path: str | Path) -> Path:
    """The adapter folder `path` names: the folder itself, or the `adapter/` inside a LoRA run or exported folder."""
    folder = Path(path).expanduser()
    for candidate in (folder, folder / ADAPTER_DIR):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    if not folder.exists():
        raise MmvError(f"adapter {folder} does not exist", option="adapter")
    if not folder.is_dir():
        raise MmvError(f"{folder} is a file; an adapter is the folder that holds {CONFIG_NAME}", option="adapter")
    raise MmvError(f"{folder} holds no adapter (no {CONFIG_NAME} in it or in its {ADAPTER_DIR}/)", option="adapter")


def save_adapter(folder: Path, model: nn.Module, spec: AdapterSpec, base: str | None) -> Path:
    """Write the model's adapters and projector to `folder` (swapped in whole: a crash leaves the previous one)."""
    from safetensors.torch import save

    from mmv.adapters.inject import adapter_tensors
    from mmv.fsio import staged_folder

    tensors = {FILE_PREFIX + k: v for k, v in adapter_tensors(model).items()}
    projector = model.get_submodule(PROJECTOR_MODULE).state_dict()
    tensors.update(
        {f"{FILE_PREFIX}{PROJECTOR_MODULE}.{k}": v.detach().float().cpu().clone() for k, v in projector.items()}
    )
    try:
        with staged_folder(folder) as staged:
            (staged / WEIGHTS_NAME).write_bytes(save(tensors, metadata={"format": "pt"}))  # a plain file's mode
            spec.lora_config(base=base, with_projector=True).save_pretrained(str(staged))
    except OSError as exc:
        raise MmvError(
            f"could not write the adapter {folder}: {exc.strerror or exc}; the previous one is intact"
        ) from None
    return folder


def read_adapter(path: str | Path) -> Adapter:
    """An adapter folder read and checked: a LoRA config, finite floating-point tensors, nothing unknown."""
    folder = find_adapter(path)
    raw = read_json_object(folder / CONFIG_NAME)
    if raw.get("peft_type") != "LORA":
        raise MmvError(
            f"{folder} holds a {raw.get('peft_type')!r} adapter; mmv applies LoRA and DoRA adapters", option="adapter"
        )
    config = parse_config(raw, folder / CONFIG_NAME)
    extra = [m for m in config.modules_to_save or [] if m != PROJECTOR_MODULE]
    if extra:
        raise MmvError(f"{folder} also trains {extra[0]} in full; mmv adapters carry only the projector beside them")
    tensors = adapter_weights(folder)
    lora = {k.removeprefix(FILE_PREFIX): v for k, v in tensors.items() if ADAPTER_MARK in k}
    projector_prefix = f"{FILE_PREFIX}{PROJECTOR_MODULE}."
    projector = {k.removeprefix(FILE_PREFIX): v for k, v in tensors.items() if k.startswith(projector_prefix)}
    unknown = sorted(set(tensors) - {FILE_PREFIX + k for k in (*lora, *projector)})
    if unknown or not lora:
        what = f"holds {unknown[0]}, which is neither an adapter nor the projector" if unknown else "holds no adapter"
        raise MmvError(f"{folder / WEIGHTS_NAME} {what}")
    if projector and not config.modules_to_save:
        raise MmvError(f"{folder / WEIGHTS_NAME} holds projector weights its config does not name (modules_to_save)")
    return Adapter(folder, config, lora, projector)


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from mmv.checkpoint import check_values

    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise MmvError(f"{folder} has no {WEIGHTS_NAME} (mmv reads adapter weights from safetensors only)")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # any unreadable file becomes the same one-line error
        raise MmvError(f"cannot read {path}: {str(exc).splitlines()[0][:200]}") from None
    outside = [k for k in tensors if not k.startswith(FILE_PREFIX)]
    if outside:
        raise MmvError(f"{path}: {outside[0]} is not in peft's layout (keys start with {FILE_PREFIX})")
    with reading(path):
        check_values(tensors)
    return tensors
