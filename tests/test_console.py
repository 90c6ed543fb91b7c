"""The shared stderr console: whole lines where stderr is not a terminal."""

from __future__ import annotations

import subprocess
import sys


def test_output_that_is_not_a_terminal_is_not_wrapped_at_80_columns():
    """A log or a pipe used to get rich's 80-column hard wrap, which cut commands and paths a user copies."""
    long = "mmv chat /a/very/long/path/" + "x" * 120 + ".png --model runs/sft --temperature 0"
    code = f"from mmv.console import console; console.print({long!r}); console.print('[bold]a[/] ' * 60)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [long, "a " * 60]
