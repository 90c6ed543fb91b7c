"""`mmv convert`."""

from __future__ import annotations

from mmv.cli.common import handle_errors, not_yet_available


@handle_errors
def convert() -> None:
    """Not yet available."""
    not_yet_available("convert")
