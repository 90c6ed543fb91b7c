"""How many CPU threads torch computes with: `--threads N`, else `MMV_THREADS`, else a default that a busy machine
cannot push off a cliff.

Torch's own default (one thread per core) falls apart when another process is busy: its OpenMP threads spin at every
barrier waiting for a thread that the OS has descheduled (on 2 cores beside one busy process, minimind-3v decoded
14 tokens/s on 2 threads against 41 on one; benchmarks/threads.py). So the default is the cores no other process
keeps busy, sampled at start. A model too small to split (the demo's) runs on one thread even on an idle machine:
each product is a few microseconds, about what waking a second thread costs, and a busy neighbour makes two
threads three times slower. OpenMP's spin-wait is left as it is: a short one (GOMP_SPINCOUNT=10000) avoided part of
the cliff but cost 25-30% of the idle 2-thread speed, and the idle-core count already keeps mmv off the cliff.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mmv.errors import MmvError

ENV = "MMV_THREADS"
SAMPLE_S = 0.05  # how long the idle cores are sampled for
# Below this many language-model weights, inference runs on one thread (see the module docstring)
SMALL_MODEL_WEIGHTS = 20_000_000
_torch_default: list[int] = []  # torch's own thread count (its physical cores), read before mmv first changes it


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where there is no /proc."""
    try:
        with open("/proc/stat") as handle:
            fields = [float(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(sample_s: float = SAMPLE_S) -> float:
    """How many cores other processes keep busy right now (0.0 where it cannot be measured)."""
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return 0.0
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def default_threads(weights: int | None = None, processes: int = 1) -> int:
    """One thread for a small model (`weights` given and below SMALL_MODEL_WEIGHTS); otherwise the cores that no
    other process keeps busy, no more than torch's own count (physical cores), shared by `processes` local
    processes of one job; at least one."""
    if weights is not None and weights < SMALL_MODEL_WEIGHTS:
        return 1
    import torch

    if not _torch_default:
        _torch_default.append(torch.get_num_threads())
    idle = round(usable_cores() - busy_cores())
    return max(1, min(_torch_default[0], idle) // max(1, processes))


def requested_threads(option: int | None) -> int | None:
    """The thread count the user asked for: the option, else MMV_THREADS; None means 'choose'."""
    if option is not None:
        value, source = option, "the thread count"
    elif os.environ.get(ENV):
        raw = os.environ[ENV]
        if not raw.strip().isdigit():
            raise MmvError(f"{ENV}={raw!r} is not a whole number of threads")
        value, source = int(raw), ENV
    else:
        return None
    if value < 1:
        raise MmvError(f"{source} must be at least 1, got {value}", option=None if source == ENV else "threads")
    return value


def set_threads(option: int | None = None, *, weights: int | None = None, processes: int = 1) -> int:
    """Apply the requested (or default, see default_threads) thread count to torch; returns it."""
    import torch

    count = requested_threads(option) or default_threads(weights, processes)
    if not _torch_default:
        _torch_default.append(torch.get_num_threads())
    torch.set_num_threads(count)
    return count


def model_weights(model: Any) -> int:
    """Weights in a MiniMind-V model's language model (its int8 layers, which hold no parameters, included)."""
    from mmv.quant.int8 import Int8Linear

    body = model.model
    packed = sum(m.in_features * m.out_features for m in body.modules() if isinstance(m, Int8Linear))
    return sum(p.numel() for p in body.parameters()) + packed
