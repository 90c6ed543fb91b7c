"""Quantized inference: a loaded model's matrices swapped for int8 ones at load time (files stay float)."""

from mmv.quant.model import SCHEMES, check_scheme, is_quantized, quantize_model

__all__ = ["SCHEMES", "check_scheme", "is_quantized", "quantize_model"]
