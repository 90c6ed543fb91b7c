"""Checks on everything a server (or a typed name) says before it reaches a path, a URL or the manifest.

A listing names files, sizes, hashes and commits; a hostile or broken server can put anything there. Each value
is checked for what it must be (a relative path that stays inside the name's folder, a byte count, hex of the
right length) and refused with one sentence otherwise, so nothing downstream ever builds a path from it unchecked.
"""

from __future__ import annotations

import re
from typing import Any

from mmv.errors import MmvError

MANIFEST = ".mmv-manifest.json"  # written by the cache into every name's folder
PARTS = ".parts"  # partial files inside a staging folder
MAX_SIZE = 1 << 50  # 1 PiB: no published file comes near; anything larger is a lie
MAX_PATH = 1024  # characters of one listed path
MAX_PIECE = 255  # bytes of one path component (the usual filesystem limit)

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
_RESERVED = (MANIFEST, PARTS)


def shown(value: Any) -> str:
    """A value as an error message may quote it: repr (escapes control characters), at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def server_text(value: Any) -> str:
    """A message from a server, fit for a one-line error: its first line, no control characters, 200 at most."""
    if not isinstance(value, str):
        return ""
    line = _CONTROL.sub(" ", value.strip().split("\n", 1)[0]).strip()
    return line if len(line) <= 200 else line[:197] + "..."


def file_path(value: Any, describe: str) -> str:
    """A listed path that stays inside the name's folder: relative, '/'-separated, no '.', '..' or empty pieces,
    no backslash, drive letter, control character or NUL, and not one of the cache's own names."""
    problem = _path_problem(value)
    if problem:
        raise MmvError(f"{describe} lists an unsafe file path {shown(value)} ({problem}); refusing to download from it")
    return value


def _path_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "not a non-empty string"
    if len(value) > MAX_PATH:
        return f"longer than {MAX_PATH} characters"
    if _CONTROL.search(value):
        return "control character"
    if "\\" in value:
        return "backslash"
    if value.startswith("/") or _DRIVE.match(value):
        return "absolute"
    pieces = value.split("/")
    if any(piece in ("", ".", "..") for piece in pieces):
        return "empty, '.' or '..' component"
    if any(len(piece.encode("utf-8", "surrogatepass")) > MAX_PIECE for piece in pieces):
        return f"a component longer than {MAX_PIECE} bytes"
    if any(piece in _RESERVED for piece in pieces):
        return "a name mmv keeps for itself"
    return None


def size(value: Any, path: str, describe: str) -> int:
    """A listed byte count: an integer from 0 to MAX_SIZE (JSON booleans and floats are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise MmvError(
            f"{describe} lists {shown(value)} as the size of {path}, which is not a byte count; "
            "refusing to download from it"
        )
    return value


def digest(value: Any, length: int, what: str, path: str, describe: str) -> str:
    """A listed content hash: `length` hex digits, returned lower-case."""
    if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
        raise MmvError(
            f"{describe} lists {shown(value)} as the {what} of {path}, which is not {length} hex digits; "
            "refusing to download from it"
        )
    return value.lower()


def commit(value: Any, lengths: tuple[int, int], describe: str) -> str:
    """A commit id the server resolved a revision to: hex, between lengths[0] and lengths[1] digits."""
    low, high = lengths
    if not isinstance(value, str) or not low <= len(value) <= high or not _HEX.match(value):
        raise MmvError(
            f"{describe} names {shown(value)} as its commit, which is not a commit id ({low}-{high} hex digits); "
            "refusing to download from it"
        )
    return value.lower()


def revision(value: str, where: str, option: str | None = None) -> str:
    """A branch, tag or commit typed by the user: letters, digits and . _ / + - (no '..', no leading symbol);
    `option` is the setting it came from, if any (see mmv.errors)."""
    if not _REVISION.match(value) or ".." in value or "//" in value or value.endswith(("/", ".lock")):
        raise MmvError(
            f"invalid revision {shown(value)} in {where}: expected a branch, tag or commit such as main, v1.0, "
            "refs/pr/1 or a commit id",
            option=option,
        )
    return value
