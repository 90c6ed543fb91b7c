"""Crash-safe writes: a file or folder appears at its final path only complete and on disk.

Everything is written beside its target (same filesystem, so the final rename is atomic), fsynced, renamed, and
the parent directory fsynced so the rename itself survives a power cut. On any failure the temporary is removed
and whatever existed at the target before is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mmv.errors import MmvError


def fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; if the block finishes it is fsynced and renamed over `path`."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise MmvError(f"{path} exists and is not a regular file; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what a plain open() would
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(binary file)`, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def refuse_input_as_output(out: str | Path, inputs: list[str | Path]) -> None:
    """Writing the output would replace a file still being read: refuse, naming both (paths, links and aliases)."""
    out = Path(out)
    for source in map(Path, inputs):
        same = out.resolve() == source.resolve()
        if not same and out.exists() and source.exists():
            same = os.path.samefile(out, source)
        if same:
            raise MmvError(f"--out {out} is the input {source}; choose another output (inputs are never overwritten)")


def check_writable(path: str | Path) -> None:
    """Fail now, not after a long job, if `path` cannot be written: its folder is created (as the write would)
    and a temporary sibling made and removed there."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise MmvError(f"{path} exists and is not a regular file; not replacing it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise MmvError(f"cannot write {path}: {exc.strerror or exc}") from None


def replace_dir(staged: Path, final: Path) -> None:
    """Swap a complete, fsynced folder into place; an old one is renamed aside first and deleted only after."""
    old = None
    if final.exists():
        # rename cannot replace a non-empty directory: two renames keep any reader from seeing a partial folder
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent)) / final.name
        os.replace(final, old)
    os.replace(staged, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)


@contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """A temporary folder beside `final`, swapped in whole (fsynced) only if the block finishes; it gets the
    permissions a plain mkdir would (mkdtemp makes it private)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(staged, 0o777 & ~_umask())
        yield staged
        fsync_tree(staged)
        replace_dir(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
