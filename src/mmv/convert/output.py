"""All-or-nothing outputs: everything is written beside the target under a temporary name, then renamed.

An interrupted conversion leaves at most a `.NAME.tmp-*` entry beside the output, never a half-written output,
and an existing output is only replaced (with --force) once the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmv.errors import MmvError
from mmv.fsio import fsync_dir, replace_dir


def check_target(out: Path, force: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MmvError(f"{out} already exists and is not empty; pass --force to replace it")
    if out.is_file() and not force:
        raise MmvError(f"{out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise MmvError(f"the folder {out.parent} for the output does not exist")


def default_mode(path: Path, base: int) -> None:
    """mkdtemp/mkstemp create private entries; give the output the permissions a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, base & ~umask)


def settle_tree(root: Path) -> None:
    """Flush every file to disk and give each the permissions a plain write would (some writers use 0600)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            default_mode(path, 0o666)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextmanager
def staged_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; on success it becomes `out`, on failure it is removed."""
    out = out.expanduser().absolute()
    check_target(out, force)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    default_mode(work, 0o777)
    try:
        yield work
        settle_tree(work)
        replace_dir(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def staged_file(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary file path beside `out`; on success it is fsynced and renamed onto `out`."""
    out = out.expanduser().absolute()
    if out.is_dir():
        raise MmvError(f"{out} is a folder; `--to pth` writes a file such as {out / 'model.pth'}")
    check_target(out, force)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(handle)
    work = Path(name)
    default_mode(work, 0o666)
    try:
        yield work
        with open(work, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(work, out)
        fsync_dir(out.parent)
    finally:
        work.unlink(missing_ok=True)
