"""The model-loading options that `mmv chat`, `mmv eval` and `mmv serve` share: each defined once, so the three
commands spell and explain them alike (each is the default of a parameter: `device: str = DEVICE`), and the one
way they load what those options name (`load_chosen_model`)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import typer

from mmv.cli.common import MODEL_FLAGS, THREADS_HELP, console, show_notes
from mmv.device import DEVICE_HELP, DTYPE_HELP
from mmv.quant import QUANTIZE_HELP

VISION = typer.Option(None, help="Vision encoder folder (default: beside the model, then the cache).")
TOKENIZER = typer.Option(None, help="Tokenizer folder (default: beside the model, then the cache).")
DEVICE = typer.Option("auto", help=DEVICE_HELP)
DTYPE = typer.Option("auto", help=DTYPE_HELP)
EXPERTS_PER_TOKEN = typer.Option(
    None, min=1, metavar="K", help="Experts each token of a MoE model routes to (a bare .pth does not record it)."
)
QUANTIZE = typer.Option(None, metavar="int8", help=QUANTIZE_HELP)
THREADS = typer.Option(None, "--threads", min=1, metavar="N", help=THREADS_HELP)
ADAPTER = typer.Option(
    None, metavar="DIR", help="Apply this LoRA / DoRA adapter to --model (a LoRA run directory applies its own)."
)
ATTENTION_HEADS = typer.Option(
    None, min=1, metavar="N", help="Attention heads of a MiniMind2-V .pth (its tensors do not tell; default 8)."
)
TILES = typer.Option(
    None, metavar="N", help="Cut each image into up to N tiles plus a global view (default: as the run records)."
)


def load_chosen_model(model: str, *, threads: int | None, spinner: bool, **options: Any) -> tuple[Any, int]:
    """`mmv.loading.load_model(model, **options)` behind a spinner (where a person watches), its notes shown with
    their flags, and torch's thread count set for the loaded model's size: (the loaded model, the threads)."""
    from mmv.loading import load_model
    from mmv.threads import model_weights, set_threads

    with console.status("loading model", spinner="dots") if spinner else nullcontext():
        loaded = load_model(model, **options)
    show_notes(loaded.notes, MODEL_FLAGS)
    return loaded, set_threads(threads, weights=model_weights(loaded.model))
