"""What every command shares: the global --json/--debug state, stderr console, JSON summary, error handling."""

from __future__ import annotations

import json
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


def emit_json(summary: dict[str, Any]) -> None:
    """The one-line summary for scripts (only with --json)."""
    if options.json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def handle_errors(func: F) -> F:
    """Turn MmvError (and friends) into one line on stderr and a non-zero exit, unless --debug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MmvError as exc:
            if options.debug:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            if options.debug:
                raise
            console.print("interrupted")
            raise SystemExit(130) from None
        except (OSError, ValueError, RuntimeError) as exc:
            if options.debug:
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            fail(f"{type(exc).__name__}: {first_line} (rerun with --debug for details)")

    return wrapper  # type: ignore[return-value]
