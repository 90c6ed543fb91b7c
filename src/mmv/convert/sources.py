"""Reading any SRC `mmv convert` accepts into one shape: reference-layout tensors, their config, side folders.

SRC is resolved exactly as `mmv chat --model` resolves it (mmv.loading): a `.pth` / `.safetensors` file, a
transformers folder (read as data: no code from it runs), an mmv training run directory, or a downloaded name.
The encoder and tokenizer folders are found the same way too (beside the model, the run's recorded folders,
then the cache for the tokenizer) unless given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.config import VLMConfig
from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

    from mmv.loading import ModelSources

VISION_SUBFOLDER = "vision"  # where mmv's transformers folders keep the SigLIP encoder (and where chat looks)


@dataclass
class Source:
    state_dict: dict[str, torch.Tensor]  # reference key layout, no vision_encoder.*
    config: VLMConfig
    text_only: bool  # an `llm_768.pth`-style file: no projector
    origin: Path  # what SRC resolved to
    resolved: ModelSources
    tokenizer_dir: Path | None = None  # given explicitly; otherwise looked up when a writer needs one
    vision_dir: Path | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.state_dict["model.embed_tokens.weight"].dtype

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the output ships with; a missing one fails with the flag that supplies it."""
        from mmv.loading import find_tokenizer
        from mmv.tokenizer import load_tokenizer

        folder = find_tokenizer(self.resolved, self.tokenizer_dir)
        if not folder.is_dir():
            raise MmvError(f"tokenizer folder {folder} does not exist")
        return load_tokenizer(folder)


def read_source(
    src: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vision: str | Path | None = None,
    base: VLMConfig | None = None,
) -> Source:
    """Resolve SRC and read its tensors; `tokenizer` / `vision` override the folders found beside it."""
    from mmv.checkpoint import read_checkpoint
    from mmv.loading import find_vision_beside, resolve_model

    resolved = resolve_model(src)
    weights = resolved.weights
    if resolved.run_config.get("model"):
        base = VLMConfig.from_dict({**(base.to_dict() if base else {}), **resolved.run_config["model"]})
    vision_dir = Path(vision).expanduser() if vision is not None else find_vision_beside(resolved)
    vision_dir = vision_dir.absolute() if vision_dir is not None else None
    if vision_dir is not None and not (vision_dir / "config.json").is_file():
        raise MmvError(f"vision encoder folder {vision_dir} has no config.json")
    checkpoint = read_checkpoint(weights, encoder_hidden(vision_dir), base)
    source = Source(
        without_encoder(checkpoint.state_dict),
        checkpoint.config,
        checkpoint.text_only,
        Path(src).expanduser().absolute() if Path(src).expanduser().exists() else weights,
        resolved,
        Path(tokenizer).expanduser() if tokenizer is not None else None,
        vision_dir,
    )
    return checked(source)


def encoder_hidden(vision_dir: Path | None) -> int | None:
    if vision_dir is None:
        return None
    from mmv.model.vision import inspect_encoder

    return inspect_encoder(vision_dir).hidden_size


def checked(source: Source) -> Source:
    """Refuse an encoder folder of another variant or width than the projector was trained for."""
    if source.vision_dir is not None and not source.text_only:
        from mmv.model.vision import inspect_encoder

        info = inspect_encoder(source.vision_dir)
        config = source.config
        if info.variant != config.vision_variant or info.hidden_size != config.image_hidden_size:
            raise MmvError(
                f"{source.vision_dir} holds a {info.variant} encoder of width {info.hidden_size}, but "
                f"{source.origin} was trained for a {config.vision_variant} encoder of width "
                f"{config.image_hidden_size}; pass the matching --with-vision folder"
            )
    return source


def without_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from mmv.model.vlm import ENCODER_PREFIX

    return {k: v for k, v in state.items() if not k.startswith(ENCODER_PREFIX)}
