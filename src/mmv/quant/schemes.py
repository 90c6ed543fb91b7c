"""The quantization schemes `--quantize` takes; no torch here, so the CLI can check the flag before loading."""

from __future__ import annotations

from mmv.errors import MmvError

SCHEMES = ("int8",)
QUANTIZE_HELP = "int8: CPU inference with int8 matrices, quantized at load (files stay as they are)."


def check_scheme(scheme: str | None) -> None:
    """Refuse an unknown scheme before anything slow happens (None: no quantization)."""
    if scheme is not None and scheme not in SCHEMES:
        raise MmvError(f"unknown quantization {scheme!r}; expected one of {', '.join(SCHEMES)}", option="quantize")
