"""One training at a time in a run directory: an advisory lock on RUN_DIR/.mmv-run.lock while a run owns it.

The OS releases a flock when its process ends, however it ends (kill -9 included), so a lock is never stale; the
file stays and names the last owner's pid for the refusal. Forked children (data loader workers) drop their copy,
so only the owner holds it. Under `--nproc` the launcher holds the lock for its workers (`HOLDER_ENV`); under a
plain torchrun rank 0 takes it. Where flock does not exist (Windows) runs are not guarded.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from mmv.errors import MmvError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".mmv-run.lock"
HOLDER_ENV = "MMV_RUN_LOCK_HOLDER"  # the pid of a launcher that holds the lock for the workers it starts
PROBE_WAIT_S = 1.0  # `holder` holds the lock for an instant: a run retries that long before calling it taken

_held: set[int] = set()  # descriptors of the locks this process holds


def _drop_in_child() -> None:
    for fd in _held:
        os.close(fd)  # the parent's descriptor keeps the lock
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def describe(pid: int) -> str:
    return f"process {pid}" if pid > 0 else "another process"


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def holder(run_dir: Path) -> int | None:
    """The pid of the process whose run owns `run_dir` (0 when it cannot be read), or None when none does."""
    if fcntl is None:
        return None
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    finally:
        os.close(fd)  # also releases the probe's shared lock
    return None


class RunLock:
    """Held for the life of a run; a second run into the same folder is refused naming the owner's pid.

    Taking it creates the folder and the lock file; releasing it removes both again (the folder only if this lock
    created it and nothing else was written there), so a start refused before writing leaves no trace."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise MmvError(f"{self.run_dir} is a file, not a run directory")
        try:
            self.created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if fcntl is not None:
                self.fd = self._lock()
        except OSError as exc:
            raise MmvError(f"cannot write in {self.run_dir}: {exc.strerror or exc}") from None
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
            _held.add(self.fd)

    def _lock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            if not self._wait_for(fd):
                owner = _read_pid(fd)
                os.close(fd)
                raise MmvError(
                    f"{self.run_dir} is in use by another training ({describe(owner)}); wait for it to finish "
                    "or train into another folder"
                )
            if self._still_linked(fd):
                return fd
            os.close(fd)  # its owner removed the file as we opened it: lock the one there now

    def _wait_for(self, fd: int) -> bool:
        deadline = time.monotonic() + PROBE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: a waiting process sees the file gone and takes a new one
            if self.created and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()
        _held.discard(self.fd)
        os.close(self.fd)
        self.fd = None


def run_lock(run_dir: Path) -> AbstractContextManager[Any]:
    """The lock a run takes on `run_dir`: none when its launcher already holds it."""
    launcher = os.environ.get(HOLDER_ENV)
    if launcher and holder(run_dir) == int(launcher):
        return nullcontext()
    return RunLock(run_dir)


@contextmanager
def held_for_workers(run_dir: Path) -> Iterator[None]:
    """A launcher holds the lock while its workers run; they find it held by their launcher and take none."""
    with RunLock(run_dir):
        os.environ[HOLDER_ENV] = str(os.getpid())
        try:
            yield
        finally:
            os.environ.pop(HOLDER_ENV, None)
