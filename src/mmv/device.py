"""Where a model runs and in which precision: the `--device` / `--dtype` choices of every command.

torch is imported inside the functions, so the CLI can list the choices without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmv.errors import MmvError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_HELP = "auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | mps"
DTYPE_HELP = "auto (bf16 on CUDA, fp16 where bf16 is missing; fp32 on CPU and MPS) | float32 | bfloat16 | float16"


def check_device(name: str) -> None:
    if name not in DEVICES:
        raise MmvError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")


def check_dtype(name: str) -> None:
    if name not in DTYPES:
        raise MmvError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")


def mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device `name` stands for; `local_rank` (a DDP process) picks its own CUDA device, rank % devices."""
    import torch

    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MmvError("device cuda was requested but torch sees no CUDA device", option="device")
    if name == "mps" and not mps_available():
        raise MmvError("device mps was requested but torch sees no Apple MPS device", option="device")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bfloat16 on CUDA (float16 where bf16 is missing); float32 on CPU and MPS, where half precision is slow
    or incomplete."""
    import torch

    check_dtype(name)
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, name)
