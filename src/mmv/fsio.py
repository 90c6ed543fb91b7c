"""Crash-safe writes: a file or folder appears at its final path only complete and on disk.

Everything is written beside its target (same filesystem, so the final rename is atomic), fsynced, renamed, and
the parent directory fsynced so the rename itself survives a power cut. On any failure the temporary is removed
and whatever existed at the target before is untouched.

Temporaries are named `.NAME.tmp-PID-XXXX` (and a folder moved aside `.NAME.old-PID-XXXX`), so whatever a killed
process leaves is recognised and cleaned by the next write of NAME (`recover`), or of any name in a folder
(`sweep`), once that process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mmv.errors import MmvError

LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[a-z0-9_]+")


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


def settle_tree(root: Path) -> None:
    """Flush every file under `root` to disk and give each the permissions a plain write would (mkstemp and some
    writers make private 0600 files)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            os.chmod(path, 0o666 & ~_umask())
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def temporary_beside(final: Path, kind: str = "tmp", folder: bool = False) -> Path:
    """A new empty file (or folder) named `.NAME.KIND-PID-XXXX` beside `final`, with the permissions a plain
    open() (or mkdir) would give it."""
    prefix = f".{final.name}.{kind}-{os.getpid()}-"
    if folder:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        os.chmod(path, 0o777 & ~_umask())
        return path
    handle, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; if the block finishes it is fsynced and renamed over `path`."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise MmvError(f"{path} exists and is not a regular file; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = temporary_beside(path)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # a writer may have made it private again
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
            raise MmvError(
                f"the output {out} is the input {source}; choose another output (inputs are never overwritten)",
                option="out",
            )


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing entries of one filesystem in one atomic step; False where the OS or filesystem cannot
    (then nothing was changed). Linux: renameat2(RENAME_EXCHANGE); macOS: renamex_np(RENAME_SWAP)."""
    if sys.platform == "linux":
        name, args = "renameat2", (-100, os.fsencode(a), -100, os.fsencode(b), 2)  # AT_FDCWD, RENAME_EXCHANGE
    elif sys.platform == "darwin":
        name, args = "renamex_np", (os.fsencode(a), os.fsencode(b), 2)  # RENAME_SWAP
    else:
        return False
    call = getattr(_libc(), name, None)
    if call is None:  # a C library without it (glibc before 2.28, musl)
        return False
    if call(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


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
    """Swap a complete, fsynced folder into place; readers see the old `final` or the new one, never neither.

    One atomic exchange where the OS has it. Elsewhere the old folder is renamed aside first: a crash between the
    two renames leaves `final` missing and the old folder as `.NAME.old-PID-XXXX`, which `recover` puts back."""
    if not (final.exists() or final.is_symlink()):
        os.replace(staged, final)
        fsync_dir(final.parent)
        return
    if exchange(staged, final):
        fsync_dir(final.parent)
        remove_entry(staged)  # it holds the old contents now
        return
    old = temporary_beside(final, "old", folder=True)
    os.rmdir(old)  # the name is reserved; rename needs it free to move a file or a non-empty folder there
    os.replace(final, old)
    os.replace(staged, final)
    fsync_dir(final.parent)
    remove_entry(old)


@contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """A temporary folder beside `final`, swapped in whole (fsynced, plain permissions) only if the block
    finishes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    staged = temporary_beside(final, folder=True)
    try:
        yield staged
        settle_tree(staged)
        replace_dir(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process that may still be writing exists (this one counts; where it cannot be told: yes)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by another user
    return True


def leftovers(folder: Path, name: str | None = None) -> list[tuple[Path, str]]:
    """(path, "tmp" | "old") of what writers that are gone left in `folder` (of `name` only, if given), newest
    first."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for path in entries:
        match = LEFTOVER.fullmatch(path.name)
        if match and (name is None or match["name"] == name) and not process_alive(int(match["pid"])):
            found.append((path, match["kind"]))
    return sorted(found, key=lambda item: item[0].lstat().st_mtime_ns, reverse=True)


@dataclass
class Recovery:
    """What cleaning up after interrupted writes did."""

    restored: list[tuple[Path, str]] = field(default_factory=list)  # (target put back, the name it was moved to)
    removed: list[Path] = field(default_factory=list)  # the temporaries deleted

    def add(self, other: Recovery) -> Recovery:
        self.restored += other.restored
        self.removed += other.removed
        return self

    def lines(self, where: Path) -> list[str]:
        """One sentence per target put back, and one for all the temporaries removed (named from `where`, the
        folder they were cleaned from)."""
        said = [
            f"put back {final}, which an interrupted replace had moved aside to {aside}"
            for final, aside in self.restored
        ]
        if self.removed:
            names = sorted(str(p.relative_to(where)) if p.is_relative_to(where) else str(p) for p in self.removed)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            entries = "temporary" if len(names) == 1 else "temporaries"
            said.append(f"removed {len(names)} {entries} that an interrupted write left in {where} ({shown})")
        return said


def recover(final: Path) -> Recovery:
    """Undo what an interrupted write of `final` left beside it: an old folder moved aside is put back where
    `final` is missing (the newest, if several), every other temporary is removed."""
    done = Recovery()
    for path, kind in leftovers(final.parent, final.name):
        if kind == "old" and not (final.exists() or final.is_symlink()):
            os.replace(path, final)
            fsync_dir(final.parent)
            done.restored.append((final, path.name))
        else:
            remove_entry(path)
            done.removed.append(path)
    return done


def sweep(folder: Path) -> Recovery:
    """`recover` every name in `folder` that left temporaries behind."""
    names = dict.fromkeys(LEFTOVER.fullmatch(path.name)["name"] for path, _ in leftovers(folder))
    done = Recovery()
    for name in names:
        done.add(recover(folder / name))
    return done


def remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
