"""What every request to a server is allowed to cost: how long it may stay silent, how much metadata it may send.

A server that accepts a connection and never answers, or answers forever, must not hang or fill anything: every
request carries connect and read timeouts, a file download gives up after `silence_s` without a byte (retries
included), and a metadata answer (repository info, a listing page) is read into memory only up to LISTING_BYTES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmv.errors import MmvError
from mmv.hub.cache import human_size
from mmv.hub.httplib import library

LISTING_BYTES = 32 << 20  # one metadata answer; a real listing page of 1,000 files is well under 1 MB
LISTING_FILES = 100_000  # entries one listing may hold across all its pages (the published repos have < 20)


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0  # to open the connection (TCP and TLS)
    read_s: float = 15.0  # the longest silence within one answer (its headers or its body) before that request fails
    silence_s: float = 30.0  # a file download gives up after this long without a new byte, retries included

    def httpx(self, cap_s: float | None = None) -> Any:
        """The per-request timeouts (a Timeout of mmv.hub.httplib's library), each cut to `cap_s` when that is
        shorter (the time a download has left)."""

        def cut(seconds: float) -> float:
            return seconds if cap_s is None else max(min(seconds, cap_s), 0.001)

        return library().Timeout(cut(self.read_s), connect=cut(self.connect_s))


def silent(exc: BaseException, timeouts: Timeouts) -> str:
    """How a timeout reads in an error: which limit ran out, and after how long."""
    if isinstance(exc, library().ConnectTimeout):
        return f"did not accept a connection within {timeouts.connect_s:g} s"
    return f"sent nothing for {timeouts.read_s:g} s ({type(exc).__name__})"


def get_metadata(
    session: Any, url: str, params: dict[str, Any] | None, headers: dict[str, str], timeouts: Timeouts, what: str
) -> Any:
    """GET a metadata answer and read it whole (see read_small); `what` names it in errors."""
    with session.stream("GET", url, params=params, headers=headers, timeout=timeouts.httpx()) as response:
        return read_small(response, what)


def read_small(response: Any, what: str) -> Any:
    """Read a streamed answer whole, but never more than LISTING_BYTES (decoded). Returns a plain, fully read
    Response of the same library (status, headers, body) that error classifiers and `.json()` can inspect."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > LISTING_BYTES:
            raise MmvError(
                f"{response.url.host} sent more than {human_size(LISTING_BYTES)} for {what}; "
                "refusing it (is the endpoint the right server?)",
                option="endpoint",
            )
    # The body is already decoded: drop the headers that would make httpx decode or frame it a second time.
    kept = [
        (key, value)
        for key, value in response.headers.multi_items()
        if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return library().Response(response.status_code, headers=kept, content=bytes(body), request=response.request)
