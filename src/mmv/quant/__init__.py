"""Quantized inference: a loaded model's matrices swapped for int8 ones at load time (files stay float).

This top level imports no torch, so the CLI can read the schemes and check `--quantize` before anything loads; the
int8 layer lives in `int8.py`, which layers a model swaps in `model.py`.
"""

from __future__ import annotations

from typing import Any

from mmv.quant.schemes import QUANTIZE_HELP, SCHEMES, check_scheme

__all__ = ["QUANTIZE_HELP", "SCHEMES", "check_scheme", "is_quantized", "quantize_model"]


def __getattr__(name: str) -> Any:
    # quantize_model and is_quantized need torch: imported on first use
    if name in ("quantize_model", "is_quantized"):
        from mmv.quant import model

        return getattr(model, name)
    raise AttributeError(f"module 'mmv.quant' has no attribute {name!r}")
