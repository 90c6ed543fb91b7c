"""The one stderr console that the CLI and the core's progress output share.

Human output and progress go to stderr so that stdout carries only a reply or a JSON summary. The core reports
through `say` (or draws progress on `console`) without importing the CLI.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Not a terminal (a pipe, a log file): rich would hard-wrap at 80 columns, splitting paths and the commands a user
# copies from the log; there, lines stay whole. A terminal wraps at its own width.
console = Console(stderr=True, highlight=False, soft_wrap=not (sys.stderr is not None and sys.stderr.isatty()))


def say(message: str) -> None:
    """One line of plain text on stderr, never re-wrapped (log files and pipes read it whole)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)
