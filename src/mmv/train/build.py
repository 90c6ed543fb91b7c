"""What a run starts from (--init, --vision, --tokenizer) and the model it trains, through mmv.loading.

`--init` is `llm`, `pretrain`, `none` or any model reference `mmv chat` takes; its encoder and tokenizer are
found the same way (given > beside it > recorded by its run > the cache). A text-only `llm_768.pth` starts a VLM
with a freshly initialised projector; `none` is a random model of --preset. Paths are made absolute, so a run
directory does not depend on the working directory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmv.config import VLMConfig, preset
from mmv.loading.build import build_model as build
from mmv.loading.folders import find_tokenizer, given_encoder, missing_tokenizer, names_download
from mmv.loading.inputs import ModelInputs, gather
from mmv.loading.resolve import INIT_NAMES, Missing, NotDownloaded, resolve_init
from mmv.model.vlm import MiniMindVLM
from mmv.train.config import TrainConfig


def absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def absolute_init(init: str) -> str:
    """A path given to --init made absolute; the names (llm, pretrain, none, a download name) as they are."""
    path = Path(init).expanduser()
    return str(path.resolve()) if init not in (*INIT_NAMES, "none") and path.exists() else init


def absolute_vision(vision: str | None) -> str | None:
    """A path given to --vision made absolute; a download name (dinov2-small) as it is."""
    return vision if vision and names_download(vision) else absolute(vision)


def preview_vision(vision: str | None) -> str | None:
    """The encoder folder --vision names, for --show-sample (a download name must be cached)."""
    if not vision:
        return None
    missing: list[Missing] = []
    found = given_encoder(absolute_vision(vision), missing)
    if missing:
        raise NotDownloaded(missing)
    return str(found)


def training_inputs(init: str, vision: str | None, tokenizer: str | None, cfg: TrainConfig) -> ModelInputs:
    """The starting weights, encoder and tokenizer; --preset supplies what the weights cannot tell."""
    return gather(
        absolute_init(init),
        resolve=resolve_init,
        vision=absolute_vision(vision),
        tokenizer=absolute(tokenizer),
        base=preset(cfg.preset),
        experts_per_token=cfg.experts_per_token,
        projector=cfg.projector,
        merge=cfg.merge,
        tiles=cfg.tiles,
    )


def preview_tokenizer(init: str, tokenizer: str | None) -> Path:
    """The tokenizer training would use, without the weights (--show-sample needs nothing else)."""
    try:
        sources = None if tokenizer else resolve_init(absolute_init(init))
    except NotDownloaded:
        sources = None  # the weights are not needed to preview; the cached tokenizer may still be there
    found = find_tokenizer(sources, absolute(tokenizer))
    if found is None:
        raise NotDownloaded([missing_tokenizer()], beside=sources is not None)
    return found


def preview_config(init: str, vision: str | None, tokenizer: str | None, cfg: TrainConfig) -> VLMConfig:
    """The model training would build (its placeholder runs and tiles); the --preset's when the weights or the
    encoder are not downloaded (--show-sample needs only the tokenizer)."""
    try:
        return training_inputs(init, vision, tokenizer, cfg).config
    except NotDownloaded:
        return preset(cfg.preset, image_tiles=cfg.tiles or 1)


def build_model(inputs: ModelInputs, cfg: TrainConfig) -> MiniMindVLM:
    """The model in float32 on the CPU with the encoder attached; fresh parameters are drawn from --seed."""
    torch.manual_seed(cfg.seed)
    return build(inputs, "cpu", "float32")
