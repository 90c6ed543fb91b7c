"""Running the app under uvicorn: listen, say where, and stop cleanly on SIGTERM or Ctrl-C.

On a signal the server stops accepting connections, the engine refuses new requests and gives running ones
`grace_s` to finish before cancelling them (their clients get a `shutting_down` error), and the process returns
normally so that the command exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from mmv.errors import MmvError
from mmv.serve.app import ServeSettings, build_app
from mmv.serve.engine import Engine, EngineSettings

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class ServeSummary:
    url: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    uptime_s: float


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when it listens and when a signal asks it to stop."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None], on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready, self.on_exit = on_ready, on_exit

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


def listen(host: str, port: int) -> socket.socket:
    """Bind first, so that a busy port is one clear sentence and `--port 0` can say which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MmvError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


@contextlib.contextmanager
def _signals_stay_handled() -> Iterator[None]:
    """uvicorn re-raises the signal that stopped it once it has shut down; let that land on a no-op handler."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    loaded: Any,
    settings: ServeSettings,
    engine_settings: EngineSettings,
    *,
    host: str,
    port: int,
    grace_s: float,
    on_ready: Callable[[str], None],
) -> ServeSummary:
    """Serve until a signal; return what was served."""
    sock = listen(host, port)
    url = base_url(sock)
    engine = Engine(loaded.model, loaded.tokenizer, threading.Lock(), engine_settings)
    engine.start()
    config = uvicorn.Config(
        build_app(engine, loaded, settings),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=int(grace_s) + 2,  # a backstop: the engine ends every request within grace_s
    )
    server = _Server(config, on_ready=lambda: on_ready(url), on_exit=lambda: engine.close(grace_s))
    started = time.monotonic()
    try:
        with _signals_stay_handled():
            server.run(sockets=[sock])
    finally:
        engine.close(0)
        engine.join(grace_s + 2)
        sock.close()
    stats = engine.stats
    return ServeSummary(
        url,
        stats.requests,
        stats.prompt_tokens,
        stats.cached_tokens,
        stats.completion_tokens,
        round(time.monotonic() - started, 1),
    )
