"""The model-loading options that `mmv chat`, `mmv eval` and `mmv serve` share, defined once: `ModelChoice` holds
them, each field with its flag's Typer settings; `takes_model_options` gives a command those flags and hands it the
values as one ModelChoice; `load_chosen_model` loads what they name."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import typer

from mmv.cli.common import MODEL_FLAGS, THREADS_HELP, console, show_notes
from mmv.device import DEVICE_HELP, DTYPE_HELP
from mmv.quant import QUANTIZE_HELP

CHOICE = "choice"  # the parameter through which a command decorated with takes_model_options receives its options


def _flag(help: str, **settings: Any) -> dict[str, Any]:
    """A field's metadata: the settings of its Typer option besides the default (the field's own)."""
    return {"help": help, **settings}


@dataclass(frozen=True)
class ModelChoice:
    """How a command loads its model, beyond the reference itself (`--model`) and the frames per video (each
    command explains --frames its own way). None or "auto": as the model and its run record, else mmv's default."""

    vision: Path | None = field(
        default=None, metadata=_flag("Vision encoder folder (default: beside the model, then the cache).")
    )
    tokenizer: Path | None = field(
        default=None, metadata=_flag("Tokenizer folder (default: beside the model, then the cache).")
    )
    device: str = field(default="auto", metadata=_flag(DEVICE_HELP))
    dtype: str = field(default="auto", metadata=_flag(DTYPE_HELP))
    experts_per_token: int | None = field(
        default=None,
        metadata=_flag(
            "Experts each token of a MoE model routes to (a bare .pth does not record it).", min=1, metavar="K"
        ),
    )
    quantize: str | None = field(default=None, metadata=_flag(QUANTIZE_HELP, metavar="int8"))
    threads: int | None = field(default=None, metadata=_flag(THREADS_HELP, min=1, metavar="N"))
    adapter: Path | None = field(
        default=None,
        metadata=_flag(
            "Apply this LoRA / DoRA adapter to --model (a LoRA run directory applies its own).", metavar="DIR"
        ),
    )
    attention_heads: int | None = field(
        default=None,
        metadata=_flag(
            "Attention heads of a MiniMind2-V .pth (its tensors do not tell; default 8).", min=1, metavar="N"
        ),
    )
    tiles: int | None = field(
        default=None,
        metadata=_flag(
            "Cut each image into up to N tiles plus a global view (default: as the run records).", metavar="N"
        ),
    )


def takes_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with the shared model flags in place of its `choice: ModelChoice` parameter (so --help lists them
    there); each call gathers their values into the one ModelChoice that `command` receives as `choice`."""
    signature = inspect.signature(command)
    declared = signature.parameters.get(CHOICE)
    if declared is None or declared.kind is not inspect.Parameter.KEYWORD_ONLY:
        # the flags are keyword-only (they have no place in a positional order), so the parameter they replace is too
        raise TypeError(f"{command.__name__} declares no keyword-only {CHOICE!r} parameter for its model options")
    hints = typing.get_type_hints(ModelChoice)
    flags = [_parameter(item, hints[item.name]) for item in fields(ModelChoice)]
    parameters = [flag for p in signature.parameters.values() for flag in (flags if p.name == CHOICE else [p])]

    @functools.wraps(command)
    def with_choice(**values: Any) -> Any:
        choice = ModelChoice(**{item.name: values.pop(item.name) for item in fields(ModelChoice)})
        return command(**values, **{CHOICE: choice})

    # Typer reads the parameters off the signature and their types off the annotations: both must show the flags
    with_choice.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    annotations = {name: hint for name, hint in command.__annotations__.items() if name != CHOICE}
    with_choice.__annotations__ = annotations | {flag.name: flag.annotation for flag in flags}
    return with_choice


def _parameter(item: Field[Any], hint: Any) -> inspect.Parameter:
    """The Typer parameter of one ModelChoice field: its type without None (Typer's own default is None), its
    default and settings."""
    parsed = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)
    option = typer.Option(item.default, **item.metadata)
    return inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=parsed)


def load_chosen_model(
    model: str, choice: ModelChoice, *, frames: int | None, need_vision: bool, spinner: bool
) -> tuple[Any, int]:
    """`mmv.loading.load_model` of `model` as `choice` says, behind a spinner (where a person watches), its notes
    shown with their flags, and torch's thread count set for the loaded model's size: (the loaded model, the
    threads)."""
    from mmv.loading import load_model
    from mmv.threads import model_weights, set_threads

    options = {name: value for name, value in asdict(choice).items() if name != "threads"}
    with console.status("loading model", spinner="dots") if spinner else nullcontext():
        loaded = load_model(model, **options, frames=frames, need_vision=need_vision)
    show_notes(loaded.notes, MODEL_FLAGS)
    return loaded, set_threads(choice.threads, weights=model_weights(loaded.model))
