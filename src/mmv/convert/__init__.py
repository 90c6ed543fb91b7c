"""`mmv convert`: native `.pth` <-> transformers folder, the language model as a native Qwen3 folder, and GGUF.

`convert()` reads any SRC (sources.py) and hands it to one writer (to_pth.py, to_transformers.py, to_qwen3.py,
to_gguf.py);
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

TARGETS = ("transformers", "pth", "qwen3", "gguf")


@dataclass
class ConvertResult:
    source: Path
    out: Path
    to: str
    dtype: str
    variant: str | None  # a reference variant or "custom"; None for a text-only LLM or a language-model-only output
    use_moe: bool
    params: int  # tensors written, the vision encoder aside, a tied lm_head counted once
    files: list[Path] = field(default_factory=list)
    vision: Path | None = None  # the encoder folder copied into the output
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # things the user should know about SRC (mmv.loading.Note)
    note: str | None = None  # what the output leaves out and why (gguf: an image side llama.cpp cannot express)
    encoder_family: str | None = None  # the vision path the output keeps (None where `variant` is None)
    tokens_per_image: int | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "command": "convert",
            "source": str(self.source),
            "to": self.to,
            "out": str(self.out),
            "dtype": self.dtype,
            "variant": self.variant,
            "encoder_family": self.encoder_family,
            "tokens_per_image": self.tokens_per_image,
            "use_moe": self.use_moe,
            "params": self.params,
            "vision": str(self.vision) if self.vision else None,
            "files": len(self.files),
            "bytes": sum(f.stat().st_size for f in self.files),
            "seconds": round(self.seconds, 3),
            "note": self.note,
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
    attention_heads: int | None = None,
    outtype: str | None = None,
    adapter: str | Path | None = None,
    merge: bool = True,
) -> ConvertResult:
    """Convert SRC to `to` at `out`. `dtype` None keeps the source's dtype (float16 for `pth`).

    `outtype` (f32 | f16 | q8_0) is the GGUF encoding, `gguf` only; None keeps the source's precision.
    `experts_per_token` and `base` supply what a bare checkpoint cannot tell (how many experts each token routes
    to; RoPE scaling), `attention_heads` a MiniMind2 model's head count; run directories and transformers folders
    record them themselves.
    `adapter` applies a LoRA / DoRA adapter folder to SRC (a LoRA run applies its own) and writes the merged model;
    `merge=False` (transformers only) writes the base folder with the adapter in its `adapter/` subfolder instead.
    """
    import torch

    from mmv.convert.output import settle_target
    from mmv.convert.sources import read_source
    from mmv.convert.weights import dtype_name, parse_dtype, settle_tying

    check_options(to, dtype, outtype)
    if not merge and to != "transformers":
        raise MmvError(
            f"an unmerged adapter is written beside a transformers folder only, not as {to}", option=("merge", "to")
        )
    started = time.perf_counter()
    out = Path(out).expanduser().absolute()
    settle_target(out, force)  # before reading a large source
    target_dtype = parse_dtype(dtype)
    source = read_source(
        src,
        tokenizer=tokenizer,
        vision=with_vision,
        base=base,
        experts_per_token=experts_per_token,
        adapter=adapter,
        merge=merge,
        attention_heads=attention_heads,
    )
    check_expressible(source.config, to)
    source.config = settle_tying(source.state_dict, source.config)
    target_dtype = target_dtype or (torch.float16 if to == "pth" else source.dtype)
    note = None
    if to == "gguf":
        from mmv.convert.gguf_tensors import default_outtype
        from mmv.convert.gguf_vision import image_side_note

        outtype, note = outtype or default_outtype(source.dtype), image_side_note(source)
    if note is None and not source.text_only:
        note = tiles_note(source.config, to)
    files = write(source, to, out, target_dtype, force, outtype)
    llm_only = to == "qwen3" or (to == "gguf" and note is not None)
    with_vision = to == "transformers" or (to == "gguf" and not llm_only and not source.text_only)
    vision = None if source.text_only or llm_only else source.config.vision
    return ConvertResult(
        source=source.origin,
        out=out,
        to=to,
        dtype=outtype if to == "gguf" else dtype_name(target_dtype),
        variant=source.config.vision_variant if vision else None,
        encoder_family=vision.family if vision else None,
        tokens_per_image=vision.tokens_per_image if vision else None,
        use_moe=source.config.use_moe,
        params=count_params(source, llm_only),
        files=files,
        vision=source.vision_dir if with_vision else None,
        seconds=time.perf_counter() - started,
        notes=source.notes,
        note=note,
    )


def tiles_note(config: VLMConfig, to: str) -> str | None:
    """What a target that cannot record or run tiles (mmv.vision_input.tiles) loses of a tiled model."""
    if config.image_tiles == 1 or to in ("transformers", "qwen3"):
        return None  # a transformers folder records them and ships the tiling code; qwen3 is the LLM alone
    if to == "pth":
        return f"the reference .pth records no tiles: run it with --tiles {config.image_tiles}, as it was trained"
    return (
        f"llama.cpp shows the model each image as one view, not the up to {config.image_tiles} tiles it was "
        "trained with, so its answers about detail may be worse"
    )


def check_options(to: str, dtype: str | None, outtype: str | None) -> None:
    from mmv.convert.gguf_tensors import OUTTYPES

    if to not in TARGETS:
        raise MmvError(f"unknown target {to!r}; expected one of {', '.join(TARGETS)}")
    if to == "gguf" and dtype is not None:
        raise MmvError(
            "a dtype does not apply to GGUF; choose its encoding (f32, f16 or q8_0) with the GGUF output type",
            option=("dtype", "outtype"),
        )
    if to != "gguf" and outtype is not None:
        raise MmvError(
            f"the GGUF output type applies to GGUF only; choose a dtype for {to}", option=("outtype", "dtype")
        )
    if outtype is not None and outtype not in OUTTYPES:
        raise MmvError(f"unknown GGUF output type {outtype!r}; expected one of {', '.join(OUTTYPES)}", option="outtype")


def check_expressible(config: VLMConfig, to: str) -> None:
    """Qwen3 (and so its GGUF) normalises q and k in every layer and has no shared expert: MiniMind2's design
    (mmv.generations) has neither property, and no choice of weights makes one model compute the other."""
    if to not in ("qwen3", "gguf") or (config.qk_norm and not config.num_shared_experts):
        return
    lacks = "no q/k norm" + (" and a shared expert" if config.num_shared_experts else "")
    raise MmvError(
        f"{to} cannot express a MiniMind2-V model ({lacks}; Qwen3 always normalises q and k): "
        "convert it to pth or transformers",
        option="to",
    )


def count_params(source: Source, llm_only: bool) -> int:
    tied = {"lm_head.weight"} if source.config.tie_word_embeddings else set()
    return sum(
        v.numel()
        for k, v in source.state_dict.items()
        if k not in tied and not (llm_only and k.startswith("vision_proj."))
    )


def write(source: Source, to: str, out: Path, dtype: torch.dtype, force: bool, outtype: str | None) -> list[Path]:
    if to == "gguf":
        from mmv.convert.to_gguf import write_gguf

        assert outtype is not None  # convert() settles the default
        return write_gguf(source, out, outtype, force)
    if to == "pth":
        from mmv.convert.to_pth import write_pth

        return write_pth(source, out, dtype, force)
    if to == "qwen3":
        from mmv.convert.to_qwen3 import write_qwen3

        return write_qwen3(source, out, dtype, force)
    from mmv.convert.to_transformers import write_transformers

    return write_transformers(source, out, dtype, force)
