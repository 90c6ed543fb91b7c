"""The trainer's side of adapters: the model prepared for a `--lora` run, and what the run directory keeps of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmv.adapters.spec import ADAPTER_DIR, AdapterSpec

if TYPE_CHECKING:
    import torch

    from mmv.model.vlm import MiniMindVLM
    from mmv.train.config import TrainConfig


def prepare_model(model: MiniMindVLM, cfg: TrainConfig, device: torch.device) -> None:
    """Quantise the base (--qlora) and inject fresh adapters; their initial values come from torch's seed."""
    from mmv.adapters.inject import add_adapters
    from mmv.adapters.quantize import check_qlora, quantize_base
    from mmv.device import pick_dtype

    spec = AdapterSpec.of(cfg)
    if cfg.qlora:
        check_qlora(device)
        quantize_base(model, device, pick_dtype(cfg.dtype, device))
    add_adapters(model, spec.lora_config())


def save_run_adapter(run_dir: Path, model: MiniMindVLM, cfg: TrainConfig) -> Path:
    """RUN_DIR/adapter: the adapters and the projector in peft's layout, naming the base they were trained on."""
    from mmv.adapters.files import save_adapter

    return save_adapter(run_dir / ADAPTER_DIR, model, AdapterSpec.of(cfg), base=cfg.init)
