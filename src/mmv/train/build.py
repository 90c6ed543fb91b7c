"""Resolving what a run starts from (--init, --vision, --tokenizer) and building the model to train.

Names go through the download cache (imported lazily: it is optional at this point), paths are taken as they are.
A text-only `llm_768.pth` starts a VLM with a freshly initialised projector; `none` is a random model of --preset.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmv.checkpoint import Checkpoint, load_weights, read_checkpoint
from mmv.config import preset
from mmv.errors import MmvError
from mmv.model.vision import EncoderInfo, inspect_encoder, load_encoder
from mmv.model.vlm import MiniMindVLM
from mmv.train.config import TrainConfig
from mmv.train.rundir import is_run_dir, read_run_config

# --init names -> (cache name, file inside it)
INIT_NAMES = {"llm": ("llm", "llm_768.pth"), "pretrain": ("minimind-3v-pytorch", "pretrain_vlm_768.pth")}


def cache_dir(name: str, what: str) -> Path:
    """A cached download, or a one-line error telling how to get it (or which option names a local copy)."""
    try:
        from mmv.hub.cache import resolve
    except ImportError:
        raise MmvError(f"no {what} given and this mmv has no download cache; pass it explicitly") from None
    return resolve(name)


def resolve_init(init: str) -> Path | None:
    """--init -> the weights to start from (file or transformers folder); None for `none`."""
    if init == "none":
        return None
    if init in INIT_NAMES:
        name, file = INIT_NAMES[init]
        path = cache_dir(name, f"--init {init} weights") / file
        if not path.is_file():
            raise MmvError(f"the cached {name} has no {file}; run `mmv download {name}` again")
        return path
    path = Path(init).expanduser()
    if path.is_dir() and is_run_dir(path):
        return path / read_run_config(path)["weights"]
    if path.is_dir() or path.suffix in (".pth", ".safetensors", ".bin", ".pt"):
        if not path.exists():
            raise MmvError(f"--init {init} does not exist")
        return path.resolve()
    raise MmvError(
        f"--init {init!r} is neither llm, pretrain, none, a weights file (.pth/.safetensors), "
        "a run directory nor a transformers folder"
    )


def resolve_vision(vision: str | None, variant: str) -> Path:
    if vision:
        path = Path(vision).expanduser()
        if not path.is_dir():
            raise MmvError(f"--vision {vision} is not a folder")
        return path.resolve()
    return cache_dir(f"siglip2-{variant}", "--vision folder")


def resolve_tokenizer(tokenizer: str | None) -> Path:
    if tokenizer:
        path = Path(tokenizer).expanduser()
        if not path.is_dir():
            raise MmvError(f"--tokenizer {tokenizer} is not a folder")
        return path.resolve()
    return cache_dir("llm", "--tokenizer folder")


def read_init(path: Path | None, encoder: EncoderInfo, cfg: TrainConfig) -> Checkpoint | None:
    """The starting checkpoint, checked against the encoder's variant."""
    if path is None:
        return None
    checkpoint = read_checkpoint(path, encoder.hidden_size, preset(cfg.preset))
    if checkpoint.text_only:
        checkpoint.config = checkpoint.config.replace(
            vision_variant=encoder.variant, image_hidden_size=encoder.hidden_size
        )
    elif checkpoint.config.vision_variant != encoder.variant:
        raise MmvError(
            f"{path} has a {checkpoint.config.vision_variant} projector but the encoder is "
            f"{encoder.variant}; pass the matching --vision folder"
        )
    return checkpoint


def init_variant(path: Path | None, cfg: TrainConfig) -> str:
    """The vision variant the starting weights imply, to pick the default encoder from the cache."""
    if path is None:
        return preset(cfg.preset).vision_variant
    checkpoint = read_checkpoint(path, None, preset(cfg.preset))
    return preset(cfg.preset).vision_variant if checkpoint.text_only else checkpoint.config.vision_variant


def build_model(init_path: Path | None, vision_dir: Path, cfg: TrainConfig) -> MiniMindVLM:
    """The model in float32 with the encoder attached; fresh parameters are drawn from --seed."""
    encoder_info = inspect_encoder(vision_dir)
    checkpoint = read_init(init_path, encoder_info, cfg)
    if checkpoint is None:
        config = preset(cfg.preset, vision_variant=encoder_info.variant, image_hidden_size=encoder_info.hidden_size)
    else:
        config = checkpoint.config
    torch.manual_seed(cfg.seed)
    model = MiniMindVLM(config, load_encoder(vision_dir))
    if checkpoint is None:
        model.init_fresh_weights()
    else:
        load_weights(model, checkpoint)
    return model.float()
