"""`mmv pretrain` and `mmv sft`."""

from __future__ import annotations

from mmv.cli.common import handle_errors, not_yet_available


@handle_errors
def pretrain() -> None:
    """Not yet available."""
    not_yet_available("pretrain")


@handle_errors
def sft() -> None:
    """Not yet available."""
    not_yet_available("sft")
