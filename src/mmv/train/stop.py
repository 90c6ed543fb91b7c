"""Ctrl-C and SIGTERM during training: a request to stop at the next step boundary, never a kill mid-write."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class StopSignal:
    """SIGINT / SIGTERM set a flag the loop reads at step boundaries. A second Ctrl-C in a single process aborts at
    once (the last checkpoint stays intact), except while a checkpoint is written: an exception raised inside a
    write (or inside the C++ serialiser under it) could abort the process or leave the write half done, so the
    signal is held (`held`) and the run stops as soon as the files are complete. Under torchrun repeats are
    expected (the launcher forwards the terminal's signal) and ignored."""

    def __init__(self, distributed: bool) -> None:
        self.distributed = distributed
        self.requested = False
        self.writing = False
        self.held = False
        self.previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested and not self.distributed and signum == signal.SIGINT:
            if self.writing:
                self.held = True
                return
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def writing_files(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False

    def __enter__(self) -> StopSignal:
        with contextlib.suppress(ValueError):  # not the main thread: no handlers, Ctrl-C behaves as usual
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
