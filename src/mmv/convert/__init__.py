"""`mmv convert`: native `.pth` <-> transformers folder, and the language model as a native Qwen3 folder.

`convert()` reads any SRC (sources.py) and hands it to one writer (to_pth.py, to_transformers.py, to_qwen3.py);
every writer stages its output beside the target and renames it into place at the end (output.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import VLMConfig
from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch

    from mmv.convert.sources import Source

TARGETS = ("transformers", "pth", "qwen3")


@dataclass
class ConvertResult:
    source: Path
    out: Path
    to: str
    dtype: str
    variant: str | None  # None for a text-only LLM
    use_moe: bool
    params: int  # tensors written, the vision encoder aside, a tied lm_head counted once
    files: list[Path] = field(default_factory=list)
    vision: Path | None = None  # the encoder folder copied into the output
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # things the user should know about SRC (mmv.loading.Note)

    def summary(self) -> dict[str, Any]:
        return {
            "command": "convert",
            "source": str(self.source),
            "to": self.to,
            "out": str(self.out),
            "dtype": self.dtype,
            "variant": self.variant,
            "use_moe": self.use_moe,
            "params": self.params,
            "vision": str(self.vision) if self.vision else None,
            "files": len(self.files),
            "bytes": sum(f.stat().st_size for f in self.files),
            "seconds": round(self.seconds, 3),
        }


def convert(
    src: str | Path,
    to: str,
    out: str | Path,
    *,
    dtype: str | None = None,
    with_vision: str | Path | None = None,
    tokenizer: str | Path | None = None,
    force: bool = False,
    base: VLMConfig | None = None,
    experts_per_token: int | None = None,
) -> ConvertResult:
    """Convert SRC to `to` at `out`. `dtype` None keeps the source's dtype (float16 for `pth`).

    `experts_per_token` and `base` supply what a bare checkpoint cannot tell (how many experts each token routes
    to; RoPE scaling); run directories and transformers folders record it themselves.
    """
    import torch

    from mmv.convert.output import check_target
    from mmv.convert.sources import read_source
    from mmv.convert.weights import dtype_name, parse_dtype, settle_tying

    if to not in TARGETS:
        raise MmvError(f"unknown target {to!r}; expected one of {', '.join(TARGETS)}")
    started = time.perf_counter()
    out = Path(out).expanduser().absolute()
    check_target(out, force)  # before reading a large source
    target_dtype = parse_dtype(dtype)
    source = read_source(src, tokenizer=tokenizer, vision=with_vision, base=base, experts_per_token=experts_per_token)
    source.config = settle_tying(source.state_dict, source.config)
    target_dtype = target_dtype or (torch.float16 if to == "pth" else source.dtype)
    files = write(source, to, out, target_dtype, force)
    llm_only = to == "qwen3"
    return ConvertResult(
        source=source.origin,
        out=out,
        to=to,
        dtype=dtype_name(target_dtype),
        variant=None if source.text_only or llm_only else source.config.vision_variant,
        use_moe=source.config.use_moe,
        params=count_params(source, llm_only),
        files=files,
        vision=source.vision_dir if to == "transformers" else None,
        seconds=time.perf_counter() - started,
        notes=source.notes,
    )


def count_params(source: Source, llm_only: bool) -> int:
    tied = {"lm_head.weight"} if source.config.tie_word_embeddings else set()
    return sum(
        v.numel()
        for k, v in source.state_dict.items()
        if k not in tied and not (llm_only and k.startswith("vision_proj."))
    )


def write(source: Source, to: str, out: Path, dtype: torch.dtype, force: bool) -> list[Path]:
    if to == "pth":
        from mmv.convert.to_pth import write_pth

        return write_pth(source, out, dtype, force)
    if to == "qwen3":
        from mmv.convert.to_qwen3 import write_qwen3

        return write_qwen3(source, out, dtype, force)
    from mmv.convert.to_transformers import write_transformers

    return write_transformers(source, out, dtype, force)
