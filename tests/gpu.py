"""The device of the `gpu`-marked tests: CUDA, and a clean skip without it.

`MMV_GPU_TEST_DEVICE=cpu` runs the same tests' code on the CPU instead (`benchmarks/gpu.sh --dry-run` does), so that
a GPU session, which is short and rare, never spends its time on a test that cannot run at all; the comparisons
they make (CUDA against the CPU) are trivially true there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

DEVICE = os.environ.get("MMV_GPU_TEST_DEVICE", "cuda")


@pytest.fixture
def gpu() -> torch.device:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device(DEVICE)


@pytest.fixture
def full_float32() -> Iterator[None]:
    """float32 convolutions and matmuls without TF32 (cuDNN allows it by default: the encoder's patch embedding would
    round its inputs to 10 mantissa bits), so a CUDA float32 result is comparable with the CPU at float32 tolerance."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
