"""What an adapter is: its rank, scale, dropout, targets and kind, and the peft `LoraConfig` that says so.

Targets are the linear layers of every decoder block, named short (`q,k,v,o,gate,up,down`); a MoE block's experts
count as its `gate`, `up` and `down` (its router, `mlp.gate`, is never adapted). They become one regular expression
over module names, anchored at `model.layers.`, so the vision encoder's own `q_proj` / `k_proj` stay untouched; the
generated transformers code has the same module names, so the pattern means the same there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError

if TYPE_CHECKING:
    from peft import LoraConfig

ADAPTER_DIR = "adapter"  # a LoRA run's adapter folder; also beside an exported base folder (`--no-merge`)
CONFIG_NAME = "adapter_config.json"  # peft's names for the two files of an adapter folder
WEIGHTS_NAME = "adapter_model.safetensors"
FILE_PREFIX = "base_model.model."  # peft saves from PeftModel -> LoraModel -> the model: every key starts so
ADAPTER_MARK = "lora_"  # peft's LoraModel.prefix: every adapter parameter's name holds it
PROJECTOR_MODULE = "vision_proj"  # trained in full beside the adapters, saved as peft's `modules_to_save`
ATTENTION = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
MLP = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
DEFAULT_TARGETS = ",".join((*ATTENTION, *MLP))
DEFAULT_LORA_LR = 1e-4  # sft with --lora when no --lr is given: the full fine-tuning rate (5e-6) barely moves them


def is_adapter_parameter(name: str) -> bool:
    return ADAPTER_MARK in name


def parse_targets(text: str) -> tuple[str, ...]:
    """`q,k,v` -> ("q", "k", "v"), each known and named once, in the canonical order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = (*ATTENTION, *MLP)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise MmvError(
            f"the LoRA targets are a comma-separated subset of {DEFAULT_TARGETS}, got {text!r}", option="lora_targets"
        )
    return tuple(name for name in known if name in names)


def target_pattern(targets: tuple[str, ...]) -> str:
    """One regular expression peft matches against whole module names (`re.fullmatch`)."""
    parts = []
    attention = [ATTENTION[t].removesuffix("_proj") for t in targets if t in ATTENTION]
    mlp = [MLP[t].removesuffix("_proj") for t in targets if t in MLP]
    if attention:
        parts.append(rf"self_attn\.({'|'.join(attention)})_proj")
    if mlp:
        parts.append(rf"mlp\.(experts\.\d+\.)?({'|'.join(mlp)})_proj")
    return rf"model\.layers\.\d+\.({'|'.join(parts)})"


@dataclass(frozen=True)
class AdapterSpec:
    rank: int
    alpha: float  # updates are scaled by alpha / rank
    dropout: float
    targets: tuple[str, ...]
    dora: bool

    @classmethod
    def of(cls, train: Any) -> AdapterSpec:
        """The adapter a TrainConfig asks for (`lora` set)."""
        rank = train.lora
        alpha = train.lora_alpha if train.lora_alpha is not None else 2 * rank
        return cls(rank, float(alpha), train.lora_dropout, parse_targets(train.lora_targets), train.dora)

    def lora_config(self, *, base: str | None = None, with_projector: bool = False) -> LoraConfig:
        """peft's config for these adapters; `with_projector` names the projector as trained in full (the file's)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=target_pattern(self.targets),
            use_dora=self.dora,
            bias="none",
            task_type="CAUSAL_LM",
            modules_to_save=[PROJECTOR_MODULE] if with_projector else None,
            base_model_name_or_path=base,
        )

    def describe(self) -> str:
        kind = "DoRA" if self.dora else "LoRA"
        return f"{kind} rank {self.rank} (alpha {self.alpha:g}) on {','.join(self.targets)}"


def check_adapter_options(train: Any, given: dict[str, Any]) -> None:
    """Adapter options that only mean something together, checked before any model is built."""
    if train.lora is None:
        needing = [name for name in ("lora_alpha", "lora_dropout", "lora_targets", "dora", "qlora") if name in given]
        if needing:
            raise MmvError(
                f"the {needing[0].replace('_', ' ')} setting needs a LoRA adapter rank", option=(needing[0], "lora")
            )
        return
    if train.init == "none":
        raise MmvError(
            "LoRA adapts existing weights, but this run starts from random ones; name a model to start from",
            option=("lora", "init"),
        )
    if "freeze" in given:
        raise MmvError(
            "the freeze mode chooses which full weights train; with LoRA the adapters and the projector train instead",
            option=("freeze", "lora"),
        )
