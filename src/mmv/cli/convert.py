"""`mmv convert`: native `.pth` <-> transformers folder, and the language model as a native Qwen3 folder."""

from __future__ import annotations

from pathlib import Path

import typer

from mmv.cli.common import console, emit_json, handle_errors, show_notes
from mmv.config import CUSTOM_VARIANT

# the settings a loading error can name (see mmv.errors) -> this command's flags
FLAGS = {
    "vision": "--with-vision DIR",
    "tokenizer": "--tokenizer DIR",
    "experts_per_token": "--experts-per-token K",
    "adapter": "--adapter DIR",
    "attention_heads": "--attention-heads N",
    "to": "--to",
    "out": "--out",
    "dtype": "--dtype",
    "outtype": "--outtype",
    "force": "--force",
    "merge": "--no-merge",
}


@handle_errors(flags=FLAGS)
def convert(
    src: str = typer.Argument(
        ...,
        help="A .pth / .safetensors file, a run directory, a transformers folder or a "
        "downloaded name (e.g. minimind-3v).",
    ),
    to: str = typer.Option(
        ..., "--to", help="transformers | pth | qwen3 | gguf (llama.cpp: NAME.gguf, mmproj-NAME.gguf, README.md)"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The folder (transformers, qwen3, gguf) or file (pth) to write."),
    dtype: str = typer.Option(None, help="float32 | float16 | bfloat16 (default: the source's; float16 for pth)."),
    with_vision: Path = typer.Option(
        None,
        "--with-vision",
        help="Also store this encoder folder (default: the one beside SRC or recorded by its run).",
    ),
    outtype: str = typer.Option(
        None, help="gguf only: f32 | f16 | q8_0 (default: f16 for a float16 source, else f32)."
    ),
    tokenizer: Path = typer.Option(None, help="Tokenizer folder (default: beside SRC, the run's, then the cache)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty output."),
    experts_per_token: int = typer.Option(
        None, min=1, metavar="K", help="Experts each token of a MoE model routes to (a bare .pth does not record it)."
    ),
    adapter: Path = typer.Option(
        None, metavar="DIR", help="Merge this LoRA / DoRA adapter into SRC (a LoRA run directory merges its own)."
    ),
    no_merge: bool = typer.Option(
        False, "--no-merge", help="transformers only: write the base folder plus its adapter in OUT/adapter."
    ),
    attention_heads: int = typer.Option(
        None, min=1, metavar="N", help="Attention heads of a MiniMind2-V .pth (its tensors do not tell; default 8)."
    ),
) -> None:
    """Convert a checkpoint between the native .pth, a transformers folder, a native Qwen3 folder and GGUF."""
    from mmv.convert import convert as run_convert

    with console.status(f"converting {src} to {to}", spinner="dots"):
        result = run_convert(
            src,
            to,
            out,
            dtype=dtype,
            with_vision=with_vision,
            tokenizer=tokenizer,
            force=force,
            experts_per_token=experts_per_token,
            attention_heads=attention_heads,
            outtype=outtype,
            adapter=adapter,
            merge=not no_merge,
        )
    show_notes(result.notes, FLAGS)
    summary = result.summary()
    if result.variant == CUSTOM_VARIANT:
        what = f"{result.encoder_family} encoder, {result.tokens_per_image} tokens per image, "
    else:
        what = f"{result.variant} " if result.variant else ""
    moe = "MoE " if result.use_moe else ""
    vision = " + vision encoder" if result.vision else ""
    console.print(
        f"wrote {result.out} ({to}, {moe}{what}{result.params / 1e6:.2f}M params{vision}, {result.dtype}, "
        f"{summary['bytes'] / 1e6:.1f} MB) in {result.seconds:.1f}s",
        soft_wrap=True,
    )
    if result.note:
        console.print(f"note: {result.note}", soft_wrap=True)
    emit_json(summary)
