"""Handing back the resident pages of a mapped weights file once a tensor in it has been read for the last time.

torch (`torch.load(mmap=True)`) and transformers (safetensors) map weight files into memory, and their tensors are
views of the map. Copying or quantizing a tensor reads its pages, which then stay resident for as long as the map is
open, that is until the last tensor of the file is gone: loading a model would hold the whole file beside the
copies made of it (a 260 MB `.pth` next to its 260 MB of parameters). `release` drops a finished tensor's pages at
once (`madvise(MADV_DONTNEED)`); the file is untouched, and a later read of the tensor faults them in again from it.

Only whole pages of a map of a file are released: memory of another kind (the heap, an anonymous map) is never
touched, and a page a neighbouring tensor shares is kept. Nothing is lost either way: a shared map's pages stay in
the page cache, and the weights loaders never write to a private one. Where the platform has no `/proc/self/maps` or no
`madvise`, `release` does nothing.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
from collections.abc import Iterable
from pathlib import Path

import torch

MADV_DONTNEED = 4  # Linux's value; madvise is looked up only where /proc/self/maps exists
PAGE = mmap.PAGESIZE


def file_maps() -> list[tuple[int, int]]:
    """(start, end) of this process's maps of regular files, sorted; empty where /proc is absent."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    spans = []
    for line in lines:
        fields = line.split(maxsplit=5)
        # address perms offset device inode [path]: a file map has an inode and a path that is not [heap], [stack]
        if len(fields) < 6 or fields[4] == "0" or fields[5].startswith("["):
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        spans.append((start, end))
    return sorted(spans)


def _madvise() -> object | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def release(tensors: Iterable[torch.Tensor], spans: list[tuple[int, int]] | None = None) -> int:
    """Drop the resident pages of each tensor that lies inside a file map (`spans`: `file_maps()`, read now when
    None); returns the bytes released. Pass only tensors nothing will read again soon: reading one later works, but
    reads the file again."""
    spans = file_maps() if spans is None else spans
    madvise = _madvise() if spans else None
    if madvise is None:
        return 0
    starts = [start for start, _ in spans]
    released = 0
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.numel() == 0:
            continue
        first = tensor.data_ptr()
        last = first + tensor.numel() * tensor.element_size()
        index = bisect.bisect_right(starts, first) - 1
        if index < 0 or last > spans[index][1]:
            continue  # not (wholly) inside one file map
        low, high = -(-first // PAGE) * PAGE, last // PAGE * PAGE  # whole pages only: neighbours keep theirs
        if high > low and madvise(low, high - low, MADV_DONTNEED) == 0:
            released += high - low
    return released
