"""Fault injection at renames, the moments a crash-safe write commits.

In-process: `crash_at_rename` makes the n-th rename (os.replace, os.rename or an atomic exchange) raise `Crash`, a
BaseException no `except Exception` catches, so nothing after that point runs; `finally` blocks still do, so a
real kill leaves more temporaries behind. `gone` treats this process's temporaries as a dead process's, as the
next start after a real kill would see them.

Real kills: `strace_renames` lists the renames any command makes (native code's too), `killed_at_rename` runs it
again and SIGKILLs it just before one of them (which then does not happen); both skip the test where strace cannot
trace. `mmv_renames` / `mmv_killed_at_rename` do the same for an `mmv` command without strace (killer.py), at the
renames Python makes: those that commit a file or folder. `killer("slow", ...)` makes every rename slow instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmv import fsio

RENAMES = "rename,renameat,renameat2"
TRACE = ["-qq", "-e", f"trace={RENAMES}"]  # the main thread: where Python renames
KILLER = Path(__file__).with_name("killer.py")


class Crash(BaseException):
    """The process died here."""


@contextmanager
def crash_at_rename(monkeypatch: pytest.MonkeyPatch, n: int | None, exchange: bool = True) -> Iterator[list[str]]:
    """Crash at the n-th rename from now on (None: never); yields the targets renamed so far. `exchange=False`:
    the filesystem cannot exchange two entries, so folders are replaced with two renames."""
    done: list[str] = []
    real_replace, real_rename, real_exchange = os.replace, os.rename, fsio.exchange

    def counted(real):
        def rename(src, dst, *args, **kwargs):
            if n is not None and len(done) + 1 == n:
                raise Crash(f"killed before renaming {src} to {dst}")
            result = real(src, dst, *args, **kwargs)
            if result is not False:
                done.append(str(dst))
            return result

        return rename

    monkeypatch.setattr(os, "replace", counted(real_replace))
    monkeypatch.setattr(os, "rename", counted(real_rename))
    monkeypatch.setattr(fsio, "exchange", counted(real_exchange if exchange else lambda a, b: False))
    try:
        yield done
    finally:
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(os, "rename", real_rename)
        monkeypatch.setattr(fsio, "exchange", real_exchange)


def gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the temporaries of every process, this one included, count as left by a dead process."""
    monkeypatch.setattr(fsio, "process_alive", lambda pid: False)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


def need_strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    probe = subprocess.run([strace, *TRACE, "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode().strip()[:200]}")
    return strace


_TRACED = re.compile(r'^(?:\d+ +)?(?P<call>\w+)\((?:AT_FDCWD, )?"(?P<src>[^"]*)", (?:AT_FDCWD, )?"(?P<dst>[^"]*)"')


@dataclass(frozen=True)
class Rename:
    call: str  # the syscall (rename, renameat, renameat2)
    target: str
    nth: int  # its invocation number among that syscall's (strace counts each syscall apart)


def strace_renames(command: list[str], log: Path, **kwargs) -> tuple[subprocess.CompletedProcess, list[Rename]]:
    """Run `command` traced; return it and its renames, in order."""
    strace = need_strace()
    done = subprocess.run([strace, *TRACE, "-o", str(log), *command], capture_output=True, text=True, **kwargs)
    renames: list[Rename] = []
    for line in log.read_text().splitlines():
        match = _TRACED.match(line)
        if match:
            nth = 1 + sum(r.call == match["call"] for r in renames)
            renames.append(Rename(match["call"], match["dst"], nth))
    log.unlink()
    return done, renames


def killed_at_rename(command: list[str], rename: Rename, **kwargs) -> subprocess.CompletedProcess:
    """Run `command` again, killed with SIGKILL on entering `rename` (which then never happens)."""
    strace = need_strace()
    inject = f"inject={rename.call}:error=EIO:signal=KILL:when={rename.nth}"
    return subprocess.run(
        [strace, *TRACE, "-o", os.devnull, "-e", inject, *command],
        capture_output=True,
        text=True,
        **kwargs,
    )


def killer(mode: str, value: str | int | float, args: list[str]) -> list[str]:
    """The command line that runs `mmv ARGS` under killer.py."""
    return [sys.executable, str(KILLER), mode, str(value), *args]


def mmv_renames(args: list[str], log: Path, **kwargs) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `mmv ARGS` in a subprocess; return it and the targets of the renames it made, in order."""
    done = subprocess.run(killer("record", log, args), capture_output=True, text=True, **kwargs)
    targets = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return done, targets


def mmv_killed_at_rename(args: list[str], n: int, **kwargs) -> subprocess.CompletedProcess:
    """Run `mmv ARGS` in a subprocess SIGKILLed just before its n-th rename."""
    return subprocess.run(killer("kill", n, args), capture_output=True, text=True, **kwargs)
