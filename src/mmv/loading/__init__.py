"""From a model reference (path, run directory, transformers folder or cached name) to a ready model.

One home for loading, in three steps every command shares:
- `resolve`: a reference -> the weights and the run that recorded them (`resolve_model`, `resolve_init`);
- `inputs`: the checkpoint read and checked, the encoder and tokenizer found (`gather`): given > beside the model
  > recorded by its run > the download cache, matched to the checkpoint's vision variant;
- `build`: a MiniMindVLM on a device and dtype (`build_model`).
`load_model` runs all three and loads the tokenizer and image processor for `mmv chat` / `mmv eval`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.loading.inputs import ModelInputs, Note, gather
from mmv.loading.resolve import ModelSources, NotDownloaded, resolve_init, resolve_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from mmv.config import VLMConfig
    from mmv.model.vision import ImageProcessor
    from mmv.model.vlm import MiniMindVLM
    from mmv.vision_input.tiles import Tiling

__all__ = [
    "LoadedModel",
    "ModelInputs",
    "ModelSources",
    "NotDownloaded",
    "Note",
    "gather",
    "load_model",
    "resolve_init",
    "resolve_model",
]


@dataclass
class LoadedModel:
    model: MiniMindVLM
    tokenizer: PreTrainedTokenizerFast
    processor: ImageProcessor | None
    weights: Path
    vision_dir: Path | None
    tokenizer_dir: Path
    notes: list[Note] = field(default_factory=list)  # things the user should know, printed on stderr
    frames: int = 8  # the frames a video is sampled to: as asked, else as the model's run trained, else 8

    @property
    def tiling(self) -> Tiling:
        """How this model cuts images: the tiles its run recorded, or the ones asked for."""
        from mmv.vision_input.tiles import Tiling

        config = self.model.config
        assert config.vision is not None  # VLMConfig settles it
        return Tiling.of(config.vision, config.image_tiles)


def load_model(
    ref: str | Path,
    *,
    vision: str | Path | None = None,
    tokenizer: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    experts_per_token: int | None = None,
    attention_heads: int | None = None,
    base: VLMConfig | None = None,
    need_vision: bool = True,
    quantize: str | None = None,
    adapter: str | Path | None = None,
    tiles: int | None = None,
    frames: int | None = None,
) -> LoadedModel:
    """Load weights, encoder, processor and tokenizer; `need_vision=False` tolerates a missing encoder.

    `experts_per_token` sets how many experts each token of a MoE model routes to (a bare `.pth` does not record
    it), `attention_heads` a MiniMind2 model's head count; `base` supplies anything else a bare checkpoint cannot
    tell (RoPE scaling). `adapter` names a LoRA / DoRA adapter folder merged into the weights (a LoRA run
    directory applies its own). `quantize` ("int8") swaps the model's matrices for quantized ones right after
    loading (mmv.quant), after any adapter is merged; it runs on the CPU in float32, which "auto" then means.
    `tiles` replaces the tiles per image the model records (mmv.vision_input.tiles), `frames` the frames per video
    its run trained with (mmv.vision_input.video).
    """
    from mmv.device import check_dtype, pick_device
    from mmv.errors import MmvError
    from mmv.loading.build import build_model
    from mmv.model.vision import ImageProcessor
    from mmv.quant import check_scheme, quantize_model
    from mmv.quant.model import quantize_block
    from mmv.tokenizer import load_tokenizer
    from mmv.vision_input.video import DEFAULT_FRAMES, check_frames

    check_scheme(quantize)
    if frames is not None:
        check_frames(frames)
    if quantize is not None:
        device = "cpu" if device == "auto" else device
        dtype = "float32" if dtype == "auto" else dtype
    target = pick_device(device)
    check_dtype(dtype)
    inputs = gather(
        ref,
        vision=vision,
        tokenizer=tokenizer,
        base=base,
        experts_per_token=experts_per_token,
        need_vision=need_vision,
        adapter=adapter,
        attention_heads=attention_heads,
        tiles=tiles,
    )
    assert inputs.sources is not None and inputs.tokenizer_dir is not None  # a reference, and the tokenizer needed
    tok = load_tokenizer(inputs.tokenizer_dir, inputs.config.image_special_token)
    if len(tok) > inputs.config.vocab_size:
        raise MmvError(
            f"the tokenizer in {inputs.tokenizer_dir} has {len(tok)} tokens but the model's vocabulary is "
            f"{inputs.config.vocab_size}",
            option="tokenizer",
        )
    processor = ImageProcessor(inputs.vision_dir) if inputs.vision_dir else None
    if inputs.checkpoint is not None and inputs.checkpoint.text_only:
        inputs.notes.append(
            Note(
                f"{inputs.name} holds text-only LLM weights: the vision projector is freshly initialised, so "
                "images are not understood until it is trained"
            )
        )
    # where quantizing can run (CPU, float32), each block is quantized as soon as it is loaded
    early = quantize is not None and target.type == "cpu" and dtype == "float32"
    model = build_model(inputs, target, dtype, after_block=quantize_block if early else None).eval()
    if quantize is not None:
        quantize_model(model, quantize)
    return LoadedModel(
        model=model,
        tokenizer=tok,
        processor=processor,
        weights=inputs.sources.weights,
        vision_dir=inputs.vision_dir,
        tokenizer_dir=inputs.tokenizer_dir,
        notes=inputs.notes,
        frames=frames or inputs.sources.recorded_frames() or DEFAULT_FRAMES,
    )
