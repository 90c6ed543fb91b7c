"""Where the encoder and tokenizer of a model are: given > beside the model > recorded by its run > the cache.

A given encoder is a folder or a name `mmv download` caches (`--vision dinov2-small`). Beside the model means its
folder: the `vision/` subfolder of a transformers folder or run directory (a run's
trained encoder), the tokenizer files of a transformers folder or of the cached `llm` name. The cached encoder is
the one of the checkpoint's reference variant; a model over any other encoder is found given, beside it
or recorded by its run.
"""

from __future__ import annotations

from pathlib import Path

from mmv.config import CUSTOM_VARIANT, VLMConfig
from mmv.errors import MmvError
from mmv.hub.cache import find
from mmv.hub.registry import NAMES, canonical
from mmv.layout import CONFIG_FILE, TOKENIZER_FILES, VISION_SUBFOLDER
from mmv.loading.resolve import Missing, ModelSources

TOKENIZER_NAMES = ("llm", "minimind-3v")  # cached names that hold a tokenizer; the first is the one to download


def encoder_name(variant: str) -> str:
    """The download name of an encoder of `variant`."""
    return f"siglip2-{variant}"


def given(folder: str | Path | None) -> Path | None:
    return Path(folder).expanduser() if folder else None


def names_download(value: str | Path) -> bool:
    """Whether `value` is a download name rather than a path (an existing path of that name wins)."""
    return canonical(str(value)) in NAMES and not Path(value).expanduser().exists()


def given_encoder(value: str | Path, missing: list[Missing]) -> Path | None:
    """The folder `--vision` names: a path, or the cached copy of a download name; a name not downloaded yet is
    added to `missing` (None)."""
    if not names_download(value):
        return Path(value).expanduser()
    name = canonical(str(value))
    found = find(name)
    if found is None:
        missing.append(Missing(name, f"the vision encoder {name} is not downloaded", "vision", folder=False))
    return found


def encoder_near(sources: ModelSources | None) -> Path | None:
    """The encoder beside the model (its `vision/`), else the one its run recorded; None when neither exists.

    A run that trained its encoder must have it: the one it started from would silently not match its weights."""
    if sources is None:
        return None
    run = sources.run
    if run is not None and run.config["train"].get("train_vision"):
        trained = run.folder / VISION_SUBFOLDER
        if not (trained / CONFIG_FILE).is_file():
            raise MmvError(
                f"{run.folder} trained its encoder, but {trained} is missing; the one it started from would not "
                "match its weights",
                option="vision",
            )
        return trained
    for candidate in (sources.home / VISION_SUBFOLDER, sources.recorded_folder("vision_dir")):
        if candidate is not None and (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def cached_encoder(variant: str) -> Path | None:
    return find(encoder_name(variant))


def missing_encoder(config: VLMConfig, sources: ModelSources | None) -> Missing:
    """The encoder download a model of a reference variant needs; a custom vision path has none to name."""
    if config.vision_variant == CUSTOM_VARIANT:
        assert config.vision is not None  # VLMConfig settles it
        where = "beside the model or recorded by its run" if sources is not None else "given"
        raise MmvError(f"no {config.vision.encoder_label} vision encoder was {where}", option="vision")
    return Missing(encoder_name(config.vision_variant), f"{config.vision_variant} vision encoder", "vision")


def find_tokenizer(sources: ModelSources | None, explicit: str | Path | None, cached: bool = True) -> Path | None:
    """The tokenizer folder: given, beside the model, recorded by its run, then (if `cached`) the cache; None when
    none exists. The cache holds today's tokenizer only: an earlier generation's model never falls back to it."""
    if explicit:
        return given(explicit)
    candidates = [] if sources is None else [sources.home, sources.recorded_folder("tokenizer_dir")]
    if cached:
        candidates += [find(name) for name in TOKENIZER_NAMES]
    for candidate in candidates:
        if candidate is not None and (candidate / TOKENIZER_FILES[0]).is_file():
            return candidate
    return None


def missing_tokenizer() -> Missing:
    return Missing(TOKENIZER_NAMES[0], "tokenizer", "tokenizer")
