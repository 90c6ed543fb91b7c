"""One file over HTTP: resumable (Range), retried on dropped connections, verified before it reaches its final path.

A file downloads into `<staging>/.parts/<key>.part`, where the key is a hash of its expected content, so a partial
file is only ever resumed against the same content (and its name is never a string the server chose). The body
may not grow past the listed size, and a download gives up after `Timeouts.silence_s` without a byte. Only after
the size and the hash match is the file renamed to `<staging>/<path>`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmv.errors import MmvError
from mmv.hub import validate
from mmv.hub.cache import human_size
from mmv.hub.httplib import library
from mmv.hub.limits import Timeouts
from mmv.hub.validate import PARTS

CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # path inside the repository, and inside the cached directory (checked: mmv.hub.validate)
    url: str
    size: int  # bytes, as the listing says; the body may not be longer
    sha256: str | None = None  # LFS / ModelScope content hash
    git_sha1: str | None = None  # git blob id of small (non-LFS) files: sha1("blob <size>\0" + content)

    @property
    def key(self) -> str:
        """Names the partial file: a hash of the expected content (or, without one, of where it comes from)."""
        identity = self.sha256 or self.git_sha1 or self.url
        return hashlib.sha256(f"{identity}\n{self.size}".encode()).hexdigest()


@dataclass
class Transfer:
    """How one file is fetched; the source supplies the session, headers and its own HTTP error messages."""

    session: Any  # a client of mmv.hub.httplib's library
    headers: dict[str, str]
    check: Callable[[Any, RemoteFile], None]  # raises MmvError for an HTTP error response (status >= 400)
    retries: int = 5  # resumes after a dropped connection before giving up (progress resets the count)
    backoff_s: float = 0.5  # first wait between retries; doubles each time
    on_bytes: Callable[[int], None] | None = None  # progress callback: bytes just written (negative on restart)
    timeouts: Timeouts = field(default_factory=Timeouts)
    received: int = 0  # bytes that came over the network so far (out: for the summary)
    last_byte_at: float = 0.0  # time.monotonic() of the last byte received (or of the start)


def part_path(staging: Path, remote: RemoteFile) -> Path:
    """Where the partial download of `remote` lives in `staging`."""
    return staging / PARTS / f"{remote.key}.part"


def fetch(transfer: Transfer, remote: RemoteFile, staging: Path) -> Path:
    """Download `remote` into `staging`, resuming a partial file; returns its verified final path."""
    final = _inside(staging, remote.path)
    if final.is_file():
        if _matches(final, remote):
            _count(transfer, final.stat().st_size)
            return final
        final.unlink()
    part = part_path(staging, remote)
    part.parent.mkdir(parents=True, exist_ok=True)
    etag = _download(transfer, remote, part)
    _verify(part, remote, etag)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    return final


def _inside(staging: Path, path: str) -> Path:
    """`staging/path`, refused unless it stays inside `staging` (a second line of defence after the listing)."""
    target = staging.joinpath(*validate.file_path(path, "the server").split("/"))
    if not target.resolve().is_relative_to(staging.resolve()):
        raise MmvError(f"{path} would be written outside {staging}; refusing to download it")
    return target


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _download(transfer: Transfer, remote: RemoteFile, part: Path) -> str | None:
    """Stream the missing bytes into `part`; returns the server's content hash header, if any."""
    http = library()
    attempts = transfer.retries
    wait = transfer.backoff_s
    etag = None
    if _size(part) > remote.size:
        part.unlink()  # longer than the file: not ours, start over
    _count(transfer, _size(part))
    transfer.last_byte_at = time.monotonic()
    while True:
        done = _size(part)
        if done == remote.size:
            return etag
        left = transfer.timeouts.silence_s - (time.monotonic() - transfer.last_byte_at)
        try:
            return _stream(transfer, remote, part, done, left)
        except _TooLong as exc:
            part.unlink(missing_ok=True)
            raise MmvError(
                f"the server sent more than the {human_size(remote.size)} listed for {remote.path}; the download was "
                "discarded and nothing was cached (the listing and the file disagree: try again later, or "
                "another endpoint or source)",
                option=("endpoint", "source"),
            ) from exc
        except (http.TransportError, _ShortRead) as exc:
            if _size(part) > done:
                attempts, wait = transfer.retries, transfer.backoff_s  # progress was made: a fresh set of retries
            silent = time.monotonic() - transfer.last_byte_at
            if attempts <= 0 or silent + wait >= transfer.timeouts.silence_s:
                raise MmvError(_gave_up(remote, part, exc, silent)) from exc
            attempts -= 1
            time.sleep(wait)
            wait *= 2
        except http.RequestError as exc:
            raise MmvError(
                f"the server's answer for {remote.path} cannot be read ({_reason(exc)}); "
                f"{human_size(_size(part))} are kept and the same command resumes from there"
            ) from exc


def _gave_up(remote: RemoteFile, part: Path, exc: BaseException, silent: float) -> str:
    kept = f"{human_size(_size(part))} are kept and the same command resumes from there"
    if isinstance(exc, library().TimeoutException):
        return f"no data arrived for {silent:.0f} s while downloading {remote.path} ({_reason(exc)}); {kept}"
    return f"the connection dropped while downloading {remote.path} ({_reason(exc)}); {kept}"


class _ShortRead(Exception):
    """The server closed the body before Content-Length bytes arrived."""


class _TooLong(Exception):
    """The server sends (or announces) more bytes than the listing gave as the file's size."""


def _stream(transfer: Transfer, remote: RemoteFile, part: Path, done: int, left_s: float) -> str | None:
    # identity: Range offsets and Content-Length must count the file's own bytes, not a compressed body
    headers = {**transfer.headers, "Accept-Encoding": "identity"}
    if done:
        headers["Range"] = f"bytes={done}-"
    timeout = transfer.timeouts.httpx(cap_s=left_s)
    request = transfer.session.stream("GET", remote.url, headers=headers, follow_redirects=True, timeout=timeout)
    with request as response:
        if response.status_code == 416 and done:
            # The server says our offset is past the end: the partial file is stale. Start over.
            part.unlink()
            _count(transfer, -done)
            raise _ShortRead("range not satisfiable")
        transfer.check(response, remote)
        if done and response.status_code == 200:
            part.unlink()  # the server ignored Range and sends everything: rewrite from the start
            _count(transfer, -done)
            done = 0
        elif done and not response.headers.get("Content-Range", "").startswith(f"bytes {done}-"):
            raise MmvError(
                f"the server answered a resume of {remote.path} with the wrong byte range "
                f"({validate.shown(response.headers.get('Content-Range'))}); delete the partial download with "
                "`mmv cache rm` and try again"
            )
        expected = _content_length(response)
        if expected is not None and done + expected > remote.size:
            raise _TooLong(f"announced {done + expected} bytes")
        received = _write_body(transfer, remote, response, part, done)
        if expected is not None and received < expected:
            raise _ShortRead(f"got {received} of {expected} bytes")
        linked = response.headers.get("X-Linked-Etag") or response.headers.get("ETag")
        return linked.removeprefix("W/").strip('"') if linked else None


def _content_length(response: Any) -> int | None:
    """The body's announced length in file bytes, when it says one (a compressed body's length says nothing)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _write_body(transfer: Transfer, remote: RemoteFile, response: Any, part: Path, done: int) -> int:
    """Append the body to `part` as it arrives, never past the listed size; returns the bytes written."""
    received = 0
    with open(part, "ab", buffering=0) as fh:  # unbuffered: the file holds every byte received, even on kill -9
        try:
            for chunk in response.iter_bytes():  # as received, so a drop loses nothing already read
                if done + received + len(chunk) > remote.size:
                    raise _TooLong(f"more than {remote.size} bytes")
                fh.write(chunk)
                received += len(chunk)
                transfer.received += len(chunk)
                transfer.last_byte_at = time.monotonic()
                _count(transfer, len(chunk))
            os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise MmvError(
                    f"the disk is full while writing {remote.path} to {part.parent}; the partial file is kept "
                    "and the same command resumes once space is freed (or set MMV_HOME to another disk)"
                ) from exc
            raise
    return received


def _verify(part: Path, remote: RemoteFile, etag: str | None) -> None:
    """Size, then sha256 (or the git blob id); a mismatch deletes the download so nothing bad is ever kept."""
    size = part.stat().st_size
    problem = None
    if size != remote.size:
        problem = f"expected {remote.size} bytes, got {size}"
    else:
        kind, want = _expected_hash(remote, etag)
        if want is not None:
            got = _hash_file(part, kind, size)
            if got != want:
                problem = f"{kind} is {got}, expected {want}"
    if problem:
        part.unlink()
        raise MmvError(
            f"{remote.path} failed verification ({problem}); the download was discarded, "
            "nothing was cached, and running the command again starts it afresh"
        )


def _matches(path: Path, remote: RemoteFile) -> bool:
    size = path.stat().st_size
    if size != remote.size:
        return False
    kind, want = _expected_hash(remote, None)
    return want is None or _hash_file(path, kind, size) == want


def _expected_hash(remote: RemoteFile, etag: str | None) -> tuple[str, str | None]:
    if remote.sha256:
        return "sha256", remote.sha256.lower()
    if remote.git_sha1:
        return "git-sha1", remote.git_sha1.lower()
    etag = (etag or "").lower()
    if _HEX64.match(etag):
        return "sha256", etag
    if _HEX40.match(etag):
        return "git-sha1", etag
    return "sha256", None


def _hash_file(path: Path, kind: str, size: int) -> str:
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git-sha1":
        digest.update(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _count(transfer: Transfer, n: int) -> None:
    if transfer.on_bytes is not None and n:
        transfer.on_bytes(n)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
