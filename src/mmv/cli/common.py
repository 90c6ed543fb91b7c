"""What every command shares: the global --json/--debug state, stderr console, JSON summary, error handling."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from rich.markup import escape

from mmv.console import console
from mmv.errors import MmvError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalOptions:
    json: bool = False  # print exactly one JSON object on stdout when the command finishes
    debug: bool = False  # show tracebacks instead of one-line errors


options = GlobalOptions()

THREADS_HELP = "CPU threads for torch [default: $MMV_THREADS, else the idle cores; one for a small model]."
TRAIN_THREADS_HELP = "CPU threads per process [default: $MMV_THREADS, else the idle cores, shared by --nproc]."

# The flags of the model-loading commands for the settings an error or a note can name (MmvError.options, see
# mmv.errors): the core never spells a flag, each command says which of its own flags sets what.
MODEL_FLAGS = {
    "vision": "--vision DIR",
    "tokenizer": "--tokenizer DIR",
    "experts_per_token": "--experts-per-token K",
    "attention_heads": "--attention-heads N",
    "tiles": "--tiles N",
    "device": "--device",
    "dtype": "--dtype",
    "quantize": "--quantize",
    "threads": "--threads",
    "adapter": "--adapter DIR",
}


def emit_json(summary: dict[str, Any]) -> None:
    """The one-line summary for scripts (only with --json). A number that is not finite (the perplexity of a model
    that gives an answer token no probability) is written as null: Python's `Infinity` / `NaN` are not JSON, and
    strict readers (jq, JavaScript's JSON.parse) refuse the whole line over them."""
    if options.json:
        sys.stdout.write(json.dumps(finite_or_null(summary), default=str, allow_nan=False) + "\n")
        sys.stdout.flush()


def finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def with_flags(message: str, settings: tuple[str, ...], flags: dict[str, str]) -> str:
    """`message` with the command's flags for `settings` appended: "... (option: --vision DIR)"."""
    named = [flags[s] for s in settings if s in flags]
    return f"{message} (option: {', '.join(named)})" if named else message


def show_notes(notes: list[str], flags: dict[str, str]) -> None:
    """Notes about a loaded model on stderr; a note naming a setting (mmv.loading.Note) gets the command's flag."""
    for note in notes:
        option = getattr(note, "option", None)
        text = with_flags(str(note), (option,) if option else (), flags)
        console.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def handle_errors(func: F | None = None, *, flags: dict[str, str] | None = None) -> Any:
    """Turn MmvError (and friends) into one line on stderr and a non-zero exit, unless --debug.

    `@handle_errors(flags={"vision": "--vision DIR", ...})` maps the settings an MmvError names (its `options`)
    to the command's flags, appended to the message; plain `@handle_errors` adds none.
    """
    if func is None:
        return lambda f: handle_errors(f, flags=flags)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MmvError as exc:
            if options.debug:
                raise
            fail(with_flags(str(exc), exc.options, flags or {}), exc.exit_code)
        except KeyboardInterrupt:
            if options.debug:
                raise
            console.print("interrupted")
            raise SystemExit(130) from None
        except OSError as exc:
            if options.debug:
                raise
            fail(os_error_line(exc) if exc.strerror is not None else unexpected(exc))
        except (ValueError, RuntimeError) as exc:
            if options.debug:
                raise
            fail(unexpected(exc))

    return wrapper


def os_error_line(exc: OSError) -> str:
    """What the operating system refused, on which file, the way Unix tools say it ("out/x: Not a directory"): an
    environment problem, not a bug, so no `OSError: [Errno 20]` and no --debug hint."""
    files = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    return f"{files}: {exc.strerror}" if files else str(exc.strerror)


def unexpected(exc: BaseException) -> str:
    """An error no check foresaw: its type and first line, and how to see the rest."""
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line} (rerun with --debug for details)"
