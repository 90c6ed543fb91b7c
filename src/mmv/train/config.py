"""The training configuration and the two stage presets (REFERENCE.md section 6)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mmv.adapters.spec import DEFAULT_LORA_LR, DEFAULT_TARGETS, parse_targets
from mmv.config import PROJECTORS, check_field_types
from mmv.device import check_device, check_dtype
from mmv.errors import MmvError

FREEZE_MODES = ("projector", "ends", "none")
CACHE_DTYPES = ("float16", "float32")


@dataclass
class TrainConfig:
    stage: str = "sft"  # "pretrain" or "sft": names the weights file and picks the defaults below
    init: str = "pretrain"  # llm | pretrain | none | a .pth/.safetensors path, a run directory or a transformers folder
    preset: str = "minimind-3v"  # model shape for --init none (and what a bare .pth cannot tell, e.g. top-k)
    experts_per_token: int | None = None  # experts per token of a MoE; None: what --init records, else --preset's
    freeze: str = "ends"  # projector | ends (projector + first and last block) | none (whole LLM + projector)
    train_vision: bool = False  # also train the encoder (the reference never does; needed from scratch)
    # a fresh projector's kind (linear | mlp | ln-mlp) and merge (KxK patches; NaFlex: K patches per token);
    # None: what the reference variant of the encoder's geometry uses, else ln-mlp without merge
    projector: str | None = None
    merge: int | None = None
    tiles: int | None = None  # at most this many tiles per image plus a global view; None: what --init records, else 1
    epochs: int = 2
    max_steps: int | None = None  # stop after this many optimizer steps (the lr schedule spans them)
    batch_size: int = 4  # samples per rank per micro-batch; global batch = batch_size x accum x world size
    accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-6
    warmup: int = 0  # linear warmup steps before the reference cosine schedule (the reference has none)
    weight_decay: float = 0.01  # AdamW's torch default, as the reference uses
    grad_clip: float = 1.0
    max_seq_len: int = 768
    pack: bool = False
    save_every: int = 1000  # optimizer steps between resume checkpoints (and weight files)
    keep: int = 2  # resume checkpoints kept in RUN_DIR/checkpoints
    log_every: int = 10  # optimizer steps per metrics.jsonl line
    seed: int = 42
    compile: bool = False  # torch.compile the model
    dtype: str = "auto"  # compute dtype: auto = bfloat16 autocast on CUDA (float16 + scaler without bf16), else fp32
    device: str = "auto"  # auto = CUDA, else Apple MPS, else the CPU
    grad_checkpoint: bool = False  # recompute each block in backward: less activation memory, ~30% more compute
    num_workers: int = 0  # DataLoader workers per rank for decoding and tokenising
    # read each image's encoder output from a feature cache instead of running the frozen encoder every epoch:
    # the cache beside the data (built when missing), or at feature_cache
    cache_features: bool = False
    feature_cache: str | None = None  # where the cache is (implies cache_features); None: beside the first data file
    cache_dtype: str = "float16"  # the cache's storage dtype; float32 gives exactly the losses without a cache
    wandb: bool = False
    tensorboard: bool = False
    # adapters (mmv.adapters): with `lora` set, the LLM's linear layers get adapters and only they, the projector
    # and (with train_vision) the encoder train; `freeze` does not apply
    lora: int | None = None  # adapter rank; None: no adapters, the weights `freeze` names train in full
    lora_alpha: float | None = None  # adapter updates scale by alpha / rank; None: 2 x rank
    lora_dropout: float = 0.0  # dropout on the adapters' input
    lora_targets: str = DEFAULT_TARGETS  # the blocks' linear layers that get adapters
    dora: bool = False  # DoRA: weight-decomposed adapters (a trained magnitude per output row)
    qlora: bool = False  # hold the frozen base in 4-bit NF4 (bitsandbytes, CUDA only)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.stage not in STAGE_DEFAULTS:
            raise MmvError(f"unknown stage {self.stage!r}; expected pretrain or sft")
        if self.freeze not in FREEZE_MODES:
            raise MmvError(
                f"unknown freeze mode {self.freeze!r}; expected one of {', '.join(FREEZE_MODES)}", option="freeze"
            )
        check_dtype(self.dtype)
        check_device(self.device)
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "accum": self.accum,
            "max_seq_len": self.max_seq_len,
            "save_every": self.save_every,
            "keep": self.keep,
            "log_every": self.log_every,
        }
        for name, value in positive.items():
            if value < 1:
                raise MmvError(f"{name.replace('_', ' ')} must be at least 1, got {value}", option=name)
        if self.projector is not None and self.projector not in PROJECTORS:
            raise MmvError(
                f"unknown projector {self.projector!r}; expected one of {', '.join(PROJECTORS)}", option="projector"
            )
        for name in ("max_steps", "experts_per_token", "merge", "tiles"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MmvError(f"{name.replace('_', ' ')} must be at least 1, got {value}", option=name)
        if self.lr <= 0 or self.warmup < 0:
            raise MmvError("the learning rate must be positive and the warmup non-negative", option=("lr", "warmup"))
        if self.cache_dtype not in CACHE_DTYPES:
            raise MmvError(
                f"unknown cache dtype {self.cache_dtype!r}; expected one of {', '.join(CACHE_DTYPES)}",
                option="cache_dtype",
            )
        if self.train_vision and self.uses_feature_cache:
            raise MmvError(
                "training the vision encoder changes its features, so they cannot come from a feature cache; "
                "train with one or the other",
                option=("train_vision", "cache_features", "feature_cache"),
            )
        self.check_adapter_values()

    @property
    def uses_feature_cache(self) -> bool:
        return self.cache_features or self.feature_cache is not None

    def check_adapter_values(self) -> None:
        if self.lora is not None and self.lora < 1:
            raise MmvError(f"the LoRA adapter rank must be at least 1, got {self.lora}", option="lora")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise MmvError(f"the LoRA alpha must be positive, got {self.lora_alpha}", option="lora_alpha")
        if not 0 <= self.lora_dropout < 1:
            raise MmvError(f"the LoRA dropout must be in [0, 1), got {self.lora_dropout}", option="lora_dropout")
        parse_targets(self.lora_targets)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The reference's defaults per stage; everything else is shared.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrain": {"init": "llm", "freeze": "projector", "lr": 4e-4, "batch_size": 16, "max_seq_len": 450},
    "sft": {"init": "pretrain", "freeze": "ends", "lr": 5e-6, "batch_size": 4, "max_seq_len": 768},
}


def stage_config(stage: str, **overrides: Any) -> TrainConfig:
    """The stage's defaults with the options the user gave (None means 'not given')."""
    if stage not in STAGE_DEFAULTS:
        raise MmvError(f"unknown stage {stage!r}; expected pretrain or sft")
    values = {"stage": stage, **STAGE_DEFAULTS[stage]}
    if stage == "sft" and overrides.get("lora") is not None:
        values["lr"] = DEFAULT_LORA_LR
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def weights_name(stage: str, hidden_size: int, use_moe: bool) -> str:
    """The reference's file name: pretrain_vlm_768.pth, sft_vlm_768_moe.pth, ..."""
    return f"{stage}_vlm_{hidden_size}{'_moe' if use_moe else ''}.pth"
