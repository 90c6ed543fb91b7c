"""torch.distributed plumbing: the process group (gloo on CPU, NCCL on GPU), collectives, and `--nproc` launch.

The same command runs under `torchrun --nproc_per_node N` (it reads RANK / WORLD_SIZE / LOCAL_RANK) or launches
torchrun itself for `--nproc N`. Rank 0 writes every file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mmv.device import pick_device
from mmv.errors import MmvError


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(preference: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; a plain process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and device.type == "mps":
        raise MmvError("several processes cannot share the mps device (gloo exchanges CPU tensors)", option="device")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, device)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(ctx: DistContext, values: list[float]) -> torch.Tensor:
    """Every rank's `values` as a float64 [world, n] tensor (one collective, identical on all ranks)."""
    local = torch.tensor(values, dtype=torch.float64)
    if not ctx.distributed:
        return local[None]
    local = local.to(ctx.device)
    out = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def strip_nproc(argv: list[str]) -> list[str]:
    """The command line without `--nproc N` / `--nproc=N`, for the workers torchrun starts."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run this command under torchrun (its API, in this process) with `nproc` local workers; return the exit
    status of the first worker that failed, or 128 + signal when the launcher itself was signalled (Ctrl-C: 130).

    Workers report their own errors in one line; torchrun's warnings and failure report are kept out of the way.
    """
    os.environ.setdefault("LOGLEVEL", "ERROR")  # read by torchrun's loggers when they are created
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # and its plain module loggers
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "-m", "mmv.cli.app", *strip_nproc(argv)]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return 128 - code if code < 0 else code
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0
