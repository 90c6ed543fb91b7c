"""From a model reference (path, run directory, transformers folder or cached name) to a ready model.

The encoder and tokenizer default to what sits beside the model, then to the download cache, matched to the
checkpoint's vision variant; every mismatch is refused in one sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.config import VLMConfig
from mmv.errors import MmvError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

    from mmv.model.vision import ImageProcessor
    from mmv.model.vlm import MiniMindVLM


@dataclass
class ModelSources:
    weights: Path  # a weights file or a transformers folder
    run_config: dict = field(default_factory=dict)  # config.json of an mmv run directory, if that is what was named


@dataclass
class LoadedModel:
    model: MiniMindVLM
    tokenizer: PreTrainedTokenizerFast
    processor: ImageProcessor | None
    weights: Path
    vision_dir: Path | None
    tokenizer_dir: Path
    notes: list[str] = field(default_factory=list)  # things the user should know, printed on stderr


def cached(name: str) -> Path | None:
    try:
        from mmv.hub.cache import find
    except ImportError:
        return None
    return find(name)


def resolve_model(ref: str | Path) -> ModelSources:
    path = Path(ref).expanduser()
    if path.is_file():
        return ModelSources(path)
    if path.is_dir():
        run_config = path / "config.json"
        if run_config.is_file():
            raw = _read_json(run_config)
            if "weights" in raw and "model" in raw:  # an mmv training run directory
                return ModelSources(path / raw["weights"], raw)
            return ModelSources(path)
        return ModelSources(single_checkpoint(path))
    if any(sep in str(ref) for sep in ("/", "\\")) or path.suffix in (".pth", ".safetensors", ".bin"):
        raise MmvError(f"model {ref} does not exist")
    found = cached(str(ref))
    if found is None:
        raise MmvError(f"model {ref!r} is neither a file nor a downloaded name; run `mmv download {ref}`")
    return resolve_model(found)


def single_checkpoint(folder: Path) -> Path:
    """A folder without config.json (a cached `llm` or `*-pytorch` name) must hold exactly one checkpoint file."""
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise MmvError(
            f"{folder} has no config.json and holds {len(files)} checkpoint files ({found}); "
            "expected a transformers folder, a run directory or one checkpoint: name the file"
        )
    return files[0]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MmvError(f"cannot read {path}: {exc}") from None


def _home(sources: ModelSources) -> Path:
    return sources.weights if sources.weights.is_dir() else sources.weights.parent


def find_vision_beside(sources: ModelSources) -> Path | None:
    recorded = sources.run_config.get("vision_dir")
    home = _home(sources)
    for candidate in (home / "vision", Path(recorded) if recorded else None):
        if candidate is not None and (candidate / "config.json").is_file():
            return candidate
    return None


def find_tokenizer(sources: ModelSources, explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit)
    recorded = sources.run_config.get("tokenizer_dir")
    candidates = [_home(sources), Path(recorded) if recorded else None, cached("llm"), cached("minimind-3v")]
    for candidate in candidates:
        if candidate is not None and (candidate / "tokenizer.json").is_file():
            return candidate
    raise MmvError(
        "no tokenizer found beside the model or in the cache; pass --tokenizer DIR or run `mmv download llm`"
    )


def pick_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise MmvError("--device cuda was requested but no CUDA device is available")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # half precision is slow or unsupported on most CPUs
    choices = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in choices:
        raise MmvError(f"unknown dtype {dtype!r}; expected auto, {', '.join(choices)}")
    return choices[dtype]


def load_model(
    ref: str | Path,
    *,
    vision: str | Path | None = None,
    tokenizer: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    expect_variant: str | None = None,
    base: VLMConfig | None = None,
    need_vision: bool = True,
) -> LoadedModel:
    """Load weights, encoder, processor and tokenizer; `need_vision=False` tolerates a missing encoder."""
    from mmv.checkpoint import load_weights, read_checkpoint
    from mmv.model.vision import ImageProcessor, inspect_encoder, load_encoder
    from mmv.model.vlm import MiniMindVLM
    from mmv.tokenizer import load_tokenizer

    sources = resolve_model(ref)
    if base is None and sources.run_config.get("model"):
        base = VLMConfig.from_dict(sources.run_config["model"])
    vision_dir = Path(vision) if vision else find_vision_beside(sources)
    encoder = inspect_encoder(vision_dir) if vision_dir else None
    checkpoint = read_checkpoint(sources.weights, encoder.hidden_size if encoder else None, base)
    config = checkpoint.config
    notes = []
    if checkpoint.text_only:
        if encoder is not None:
            config = config.replace(vision_variant=encoder.variant, image_hidden_size=encoder.hidden_size)
        notes.append(
            f"{sources.weights.name} holds text-only LLM weights: the vision projector is freshly "
            "initialised, so images are not understood until it is trained"
        )
    variant = config.vision_variant
    if expect_variant and not checkpoint.text_only and variant != expect_variant:
        raise MmvError(f"{sources.weights} is a {variant} checkpoint, but {expect_variant} was requested")
    if vision_dir is None:
        vision_dir = cached(f"siglip2-{variant}")
        encoder = inspect_encoder(vision_dir) if vision_dir else None
    if encoder is not None:
        _check_encoder(config, encoder, vision_dir, checkpoint.text_only)
    elif need_vision:
        raise MmvError(
            f"no {variant} vision encoder found beside the model or in the cache; pass --vision DIR or "
            f"run `mmv download siglip2-{variant}`"
        )

    tokenizer_dir = find_tokenizer(sources, tokenizer)
    tok = load_tokenizer(tokenizer_dir)
    if len(tok) > config.vocab_size:
        raise MmvError(
            f"the tokenizer in {tokenizer_dir} has {len(tok)} tokens but the model's vocabulary is {config.vocab_size}"
        )
    target_device = pick_device(device)
    model = MiniMindVLM(config, load_encoder(vision_dir) if encoder else None)
    load_weights(model, checkpoint)
    model = model.to(device=target_device, dtype=pick_dtype(dtype, target_device)).eval()
    return LoadedModel(
        model=model,
        tokenizer=tok,
        processor=ImageProcessor(vision_dir) if encoder else None,
        weights=sources.weights,
        vision_dir=vision_dir,
        tokenizer_dir=tokenizer_dir,
        notes=notes,
    )


def _check_encoder(config: VLMConfig, encoder, vision_dir: Path, text_only: bool) -> None:
    if text_only:
        return
    if encoder.variant != config.vision_variant or encoder.hidden_size != config.image_hidden_size:
        raise MmvError(
            f"the checkpoint expects a {config.vision_variant} encoder of width "
            f"{config.image_hidden_size}, but {vision_dir} holds a {encoder.variant} encoder of width "
            f"{encoder.hidden_size}"
        )
