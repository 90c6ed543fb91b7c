"""All-or-nothing outputs: everything is written beside the target under a temporary name, then renamed
(mmv.fsio).

An interrupted conversion leaves at most a `.NAME.tmp-*` entry beside the output, never a half-written output,
and an existing output is only replaced (with --force) once the new one is complete. The next conversion to the
same output cleans what an interrupted one left, and puts back an output that a crash took out of place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmv.console import say
from mmv.errors import MmvError
from mmv.fsio import atomic_path, recover, staged_folder


def check_target(out: Path, force: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MmvError(f"{out} already exists and is not empty; force the conversion to replace it", option="force")
    if out.is_file() and not force:
        raise MmvError(f"{out} already exists; force the conversion to replace it", option="force")
    if not out.parent.is_dir():
        raise MmvError(f"the folder {out.parent} for the output does not exist")


def settle_target(out: Path, force: bool) -> None:
    """Repair what an interrupted conversion left (before the checks: an output put back is refused again
    without --force), then check the target."""
    if out.parent.is_dir():
        for line in recover(out).lines(out.parent):
            say(line)
    check_target(out, force)


@contextmanager
def staged_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; on success it becomes `out`, on failure it is removed."""
    out = out.expanduser().absolute()
    settle_target(out, force)
    with staged_folder(out) as work:
        yield work


@contextmanager
def staged_file(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary file path beside `out`; on success it is fsynced and renamed onto `out`."""
    out = out.expanduser().absolute()
    if out.is_dir():
        raise MmvError(f"{out} is a folder; a pth conversion writes a file such as {out / 'model.pth'}", option="out")
    settle_target(out, force)
    with atomic_path(out) as work:
        yield work
