"""Everything a model is made of, found, read and checked before anything is built.

`gather` resolves a reference (mmv.loading.resolve), reads its checkpoint (mmv.checkpoint), finds the encoder
and tokenizer (mmv.loading.folders) and checks that they fit; `mmv chat`, `mmv eval`, `mmv convert` and
`mmv pretrain` / `mmv sft --init` all start here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mmv.checkpoint import Checkpoint, read_checkpoint
from mmv.config import VLMConfig
from mmv.errors import MmvError
from mmv.generations import CURRENT, generation_note
from mmv.loading.folders import (
    TOKENIZER_NAMES,
    cached_encoder,
    encoder_near,
    find_tokenizer,
    given_encoder,
    missing_encoder,
    missing_tokenizer,
)
from mmv.loading.resolve import Missing, ModelSources, NotDownloaded, resolve_model
from mmv.model.vision import EncoderInfo, inspect_encoder
from mmv.vision_input.tiles import check_tiles


class Note(str):
    """Something the user should know about a loaded model; `option` names the setting that changes it."""

    option: str | None

    def __new__(cls, text: str, option: str | None = None) -> Note:
        note = super().__new__(cls, text)
        note.option = option
        return note


@dataclass
class ModelInputs:
    sources: ModelSources | None  # None: a fresh model
    checkpoint: Checkpoint | None  # None: a fresh model, drawn at random
    config: VLMConfig  # the model to build (a text-only checkpoint's or a fresh one's fitted to the encoder)
    vision_dir: Path | None
    tokenizer_dir: Path | None
    notes: list[Note] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sources.weights.name if self.sources else "the fresh model"


def gather(
    ref: str | Path,
    *,
    resolve: Callable[[str], ModelSources | None] = resolve_model,
    vision: str | Path | None = None,
    tokenizer: str | Path | None = None,
    base: VLMConfig | None = None,
    experts_per_token: int | None = None,
    attention_heads: int | None = None,
    need_vision: bool = True,
    need_tokenizer: bool = True,
    cached_encoder_ok: bool = True,
    adapter: str | Path | None = None,
    merge_adapters: bool = True,
    projector: str | None = None,
    merge: int | None = None,
    tiles: int | None = None,
) -> ModelInputs:
    """Resolve `ref` and find its parts; every missing download is named in one NotDownloaded.

    `base` supplies what a bare checkpoint cannot tell (experts per token, RoPE scaling) and the shape of a fresh
    model; a run directory or transformers folder overrides it with what it records, `experts_per_token` overrides
    both; `attention_heads` gives a MiniMind2 model's head count the same way. `need_*=False` tolerates a
    missing encoder / tokenizer (None); `cached_encoder_ok=False` takes the encoder only when given or beside the
    model. `adapter` applies a LoRA / DoRA adapter folder to the model (a LoRA run applies its own); the checkpoint
    is the merged model unless `merge_adapters=False` (then `sources.adapters` say what would be applied).
    `projector` and `merge` shape a fresh projector (VisionConfig's
    fields; unset: the reference variant of the encoder's geometry, else ln-mlp without merge) and must match a
    trained one. `tiles` cuts images into at most that many tiles (mmv.vision_input.tiles) instead of what the
    run or folder records (1 when it records nothing): tiling changes no weight, so any model may run with any.
    """
    missing: list[Missing] = []
    try:
        sources = resolve(str(ref))
    except NotDownloaded as exc:
        sources, missing = None, list(exc.missing)
    if adapter is not None and sources is not None:
        sources = with_adapter(sources, adapter)
    base = base or VLMConfig()
    vision_dir = given_encoder(vision, missing) if vision else encoder_near(sources)
    encoder = inspect_encoder(vision_dir) if vision_dir else None
    checkpoint = None
    if sources is not None:
        recorded = sources.recorded_model(base)
        vision_config = sources.recorded_vision(base)
        checkpoint = read_checkpoint(
            sources.weights, base=recorded, encoder=encoder, vision=vision_config, attention_heads=attention_heads
        )
        if sources.adapters and merge_adapters:
            from mmv.adapters.apply import merged_checkpoint

            hidden = encoder.hidden_size if encoder else None
            checkpoint = merged_checkpoint(checkpoint, sources.adapters, hidden)
    config = checkpoint.config if checkpoint else base
    if tiles is not None:
        config = config.replace(image_tiles=check_tiles(tiles))
    if encoder is None and cached_encoder_ok and not vision:
        vision_dir = cached_encoder(config.vision_variant)
        encoder = inspect_encoder(vision_dir) if vision_dir else None
        if encoder is None and need_vision:
            missing.append(missing_encoder(config, sources))
    current = checkpoint is None or checkpoint.generation == CURRENT
    tokenizer_dir = find_tokenizer(sources, tokenizer, cached=current)
    if tokenizer_dir is None and need_tokenizer and not current:
        raise MmvError(
            f"{sources.weights.name if sources else ref} needs its own era's tokenizer, which mmv does not download: "
            "name the folder",
            option="tokenizer",
        )
    if tokenizer_dir is None and need_tokenizer and not any(m.name in TOKENIZER_NAMES for m in missing):
        missing.append(missing_tokenizer())
    inputs = ModelInputs(sources, checkpoint, config, vision_dir, tokenizer_dir)
    if not current:
        assert checkpoint is not None and sources is not None
        heads = None if sources.records_config and attention_heads is None else config.num_attention_heads
        # the flag is only worth naming where the head count was assumed, not read from a recorded config
        option = "attention_heads" if heads is not None else None
        inputs.notes.append(Note(generation_note(checkpoint.generation, heads), option=option))
    if encoder is not None:
        fit_encoder(inputs, encoder, projector, merge)  # a wrong folder is refused before any download is asked for
    if missing:
        raise NotDownloaded(missing, beside=sources is not None)
    set_experts_per_token(inputs, experts_per_token)
    return inputs


def with_adapter(sources: ModelSources, adapter: str | Path) -> ModelSources:
    """`sources` with one more adapter folder to apply (a LoRA run's own adapter already is)."""
    import dataclasses

    from mmv.adapters.files import find_adapter

    if sources.lora_run:
        assert sources.run is not None
        raise MmvError(
            f"{sources.run.folder} is a LoRA run that already applies its adapter; apply another one to a merged "
            "copy of it (mmv convert) or to its base",
            option="adapter",
        )
    return dataclasses.replace(sources, adapters=(*sources.adapters, find_adapter(adapter)))


def fit_encoder(inputs: ModelInputs, encoder: EncoderInfo, projector: str | None, merge: int | None) -> None:
    """A trained projector must match the encoder's family, geometry and width; a fresh one is made for it."""
    config = inputs.config
    if inputs.checkpoint is None or inputs.checkpoint.text_only:
        vision = encoder.vision(projector, merge)
        inputs.config = config.replace(vision=vision, image_hidden_size=encoder.hidden_size)
        return
    vision = config.vision
    assert vision is not None  # VLMConfig settles it
    if not encoder.fits(vision) or encoder.hidden_size != config.image_hidden_size:
        raise MmvError(
            f"{inputs.vision_dir} holds a {encoder.label} encoder of width {encoder.hidden_size}, but "
            f"{inputs.name} was trained for a {vision.encoder_label} encoder of width {config.image_hidden_size}",
            option="vision",
        )
    for name, wanted in (("projector", projector), ("merge", merge)):
        if wanted is not None and wanted != getattr(vision, name):
            raise MmvError(
                f"{inputs.name} has a {vision.projector} projector with merge {vision.merge}, not {name} {wanted}: "
                "a trained projector keeps its shape",
                option=name,
            )


def set_experts_per_token(inputs: ModelInputs, k: int | None) -> None:
    """How many experts each token routes to: given > recorded by a run or folder > `base` (a note says so)."""
    config = inputs.config
    if k is None:
        if config.use_moe and inputs.sources is not None and not inputs.sources.records_config:
            inputs.notes.append(
                Note(
                    f"{inputs.name} does not record how many experts each token routes to; it runs with "
                    f"{config.num_experts_per_tok}",
                    option="experts_per_token",
                )
            )
        return
    if not config.use_moe:
        inputs.notes.append(Note(f"{inputs.name} is a dense model: experts per token ({k}) does not apply"))
        return
    if not 1 <= k <= config.num_experts:
        raise MmvError(
            f"{k} experts per token does not fit {inputs.name}, which has {config.num_experts} experts",
            option="experts_per_token",
        )
    inputs.config = config.replace(num_experts_per_tok=k)
