"""Reading any SRC `mmv convert` accepts into one shape: reference-layout tensors, their config, side folders.

SRC goes through the loader every command uses (mmv.loading.gather): a `.pth` / `.safetensors` file, a
transformers folder (read as data: no code from it runs), an mmv training run directory (or a file inside one),
or a downloaded name. The encoder is the one given, beside SRC or recorded by its run (never a cached one: the
output stores only what belongs to SRC); the tokenizer is found the same way, then in the cache, and only a
writer that ships one needs it. No model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmv.config import VLMConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast


@dataclass
class Source:
    state_dict: dict[str, torch.Tensor]  # reference key layout, no vision_encoder.*
    config: VLMConfig
    text_only: bool  # an `llm_768.pth`-style file: no projector
    origin: Path  # what SRC resolved to
    tokenizer_dir: Path | None = None  # None: no tokenizer was found (a writer that needs one refuses)
    vision_dir: Path | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know (mmv.loading.Note)
    adapter: Path | None = None  # an adapter folder written beside the base instead of merged into it

    @property
    def dtype(self) -> torch.dtype:
        return self.state_dict["model.embed_tokens.weight"].dtype

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the output ships with; a missing one names the download and the setting that supplies it."""
        from mmv.loading.folders import missing_tokenizer
        from mmv.loading.resolve import NotDownloaded
        from mmv.tokenizer import load_tokenizer

        if self.tokenizer_dir is None:
            raise NotDownloaded([missing_tokenizer()])
        return load_tokenizer(self.tokenizer_dir, self.config.image_special_token)


def read_source(
    src: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vision: str | Path | None = None,
    base: VLMConfig | None = None,
    experts_per_token: int | None = None,
    adapter: str | Path | None = None,
    merge: bool = True,
    attention_heads: int | None = None,
) -> Source:
    """Resolve SRC and read its tensors; `tokenizer` / `vision` override the folders found beside it.

    A LoRA run (or SRC with `adapter`) reads as the merged model; with `merge=False` as its base plus the adapter.
    """
    from mmv.errors import MmvError
    from mmv.loading.inputs import gather

    inputs = gather(
        src,
        vision=vision,
        tokenizer=tokenizer,
        base=base,
        experts_per_token=experts_per_token,
        attention_heads=attention_heads,
        need_vision=False,
        need_tokenizer=False,
        cached_encoder_ok=False,
        adapter=adapter,
        merge_adapters=merge,
    )
    assert inputs.sources is not None and inputs.checkpoint is not None  # SRC always names weights
    given = Path(src).expanduser()
    unmerged = None
    if not merge:
        if len(inputs.sources.adapters) != 1:
            count = len(inputs.sources.adapters)
            raise MmvError(
                f"{src} applies {count or 'no'} adapter{'s' if count != 1 else ''}; only a model with exactly one "
                "can be written unmerged, as its base plus the adapter"
            )
        unmerged = inputs.sources.adapters[0]
    return Source(
        without_encoder(inputs.checkpoint.state_dict),
        inputs.config,
        inputs.checkpoint.text_only,
        given.absolute() if given.exists() else inputs.sources.weights,
        inputs.tokenizer_dir,
        inputs.vision_dir.absolute() if inputs.vision_dir else None,
        list(inputs.notes),
        unmerged,
    )


def without_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from mmv.model.vlm import ENCODER_PREFIX

    return {k: v for k, v in state.items() if not k.startswith(ENCODER_PREFIX)}
