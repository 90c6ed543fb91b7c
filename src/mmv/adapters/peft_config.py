"""An `adapter_config.json` read as data: the LoRA settings mmv applies, checked, and every other setting at its
peft default.

The file comes from anywhere, so peft never reads it directly: options such as PiSSA / OLoRA initialisation rewrite
the base weights when the adapter is injected, `layer_replication` changes the model's structure, rank and alpha
patterns change shapes per layer. mmv builds a fresh `LoraConfig` from the fields it checked and refuses a file that
sets anything else, so an adapter either means what mmv applies or is refused in one sentence.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError

if TYPE_CHECKING:
    from peft import LoraConfig

# what a file may hold whatever its value: where it came from and how peft saved it
METADATA = ("peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "peft_version")
METADATA += ("auto_mapping",)


def parse_config(raw: dict[str, Any], path: Path) -> LoraConfig:
    """The `LoraConfig` mmv applies for `raw` (the JSON object at `path`), or one MmvError naming the field."""
    from peft import LoraConfig

    def refuse(field: str, why: str) -> MmvError:
        return MmvError(f"{path}: {field} {why}", option="adapter")

    rank = raw.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise refuse("r", f"must be a positive whole number, got {rank!r}")
    alpha = raw.get("lora_alpha", rank)
    if not is_number(alpha) or alpha <= 0:
        raise refuse("lora_alpha", f"must be a positive number, got {alpha!r}")
    dropout = raw.get("lora_dropout", 0.0)
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise refuse("lora_dropout", f"must be a number in [0, 1), got {dropout!r}")
    targets = raw.get("target_modules")
    if not (isinstance(targets, str) and targets) and not is_names(targets):
        raise refuse("target_modules", f"must be a regular expression or a list of module names, got {targets!r}")
    saved = raw.get("modules_to_save")
    if saved is not None and not is_names(saved):
        raise refuse("modules_to_save", f"must be a list of module names, got {saved!r}")
    switches = {name: raw.get(name, False) for name in ("use_dora", "use_rslora")}
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise refuse(name, f"must be true or false, got {value!r}")
    checked = {"r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", *switches}
    defaults = LoraConfig().to_dict()
    for field, value in raw.items():
        if field in checked or field in METADATA or is_default(value, defaults.get(field)):
            continue
        raise refuse(field, f"is set to {value!r}, which mmv does not apply (it applies plain LoRA and DoRA adapters)")
    base = raw.get("base_model_name_or_path")
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=float(dropout),
        target_modules=targets,
        modules_to_save=saved,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base if isinstance(base, str) else None,
        **switches,
    )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def is_default(value: Any, default: Any) -> bool:
    """`value` means what peft's default means: equal, or empty where the default is empty (null, {}, [])."""
    if value == default:
        return True
    empty = (None, {}, [], False)
    return value in empty and default in empty
