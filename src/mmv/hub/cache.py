"""The download cache: where every name lives, and the rule that a cached name is complete or absent.

Layout (root = `$MMV_HOME`, else `platformdirs.user_cache_dir("mmv")`):

    <root>/<name>/                   one directory per name, present only when complete
        .mmv-manifest.json           what was fetched: source, repositories, commit, every file's size and hash
    <root>/siglip2-p32-256/          encoders: config.json, model.safetensors, preprocessor_config.json
    <root>/siglip2-p16-256/, <root>/siglip2-p16-naflex/   (`siglip2` is an alias of `siglip2-p32-256`)
    <root>/llm/                      llm_768.pth + tokenizer.json + tokenizer_config.json: both a weights folder and
                                     a tokenizer folder
    <root>/minimind-3v/, <root>/minimind-3v-moe/   the transformers folders as published
    <root>/minimind-3v-pytorch/      every native .pth checkpoint
    <root>/dataset-pretrain/pretrain_i2t.parquet, <root>/dataset-sft/sft_i2t.parquet, <root>/dataset/ (both)
    <root>/hf--OWNER--REPO[--FILE][@REV]/        `hf:` specs; `hf-dataset--...` for dataset repositories
    <root>/.staging/<name>/          downloads in progress (same filesystem as the cache, kept for resume);
                                     its .mmv-manifest.json names what is being fetched, .parts/ holds partial files

A name's directory is built in `.staging/`, verified file by file, then moved into place with one atomic rename,
so readers never see a half-downloaded name. Anything that creates `<root>/<name>/` by other means (a test copying
fixtures, a user unpacking an archive) is trusted as complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmv.console import say
from mmv.errors import MmvError
from mmv.fsio import atomic_write_text, recover, replace_dir
from mmv.hub.registry import canonical, check_spec, is_spec
from mmv.hub.validate import MANIFEST

STAGING = ".staging"


def cache_root() -> Path:
    """The cache directory: `MMV_HOME` when set, else the platform's user cache dir for mmv."""
    home = os.environ.get("MMV_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmv"))


def dir_name(name: str) -> str:
    """The directory name of a download name: registry names as they are, `hf:` specs with '/' and ':' replaced."""
    name = canonical(name)
    if not is_spec(name):
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise MmvError(f"invalid cache name {name!r}: expected a name such as minimind-3v or hf:OWNER/REPO")
        return name
    check_spec(name)
    kind, rest = name.split(":", 1)
    return f"{kind}--" + rest.replace("/", "--")


def path_of(name: str) -> Path:
    """Where `name` lives in the cache, whether or not it is there yet."""
    return cache_root() / dir_name(name)


def find(name: str) -> Path | None:
    """The cached directory of `name` when it is complete, else None. A copy that an interrupted replace (where
    the OS cannot exchange two folders) left moved aside is put back first, and said so."""
    path = path_of(name)
    if not path.is_dir() and path.parent.is_dir():
        for line in recover(path).lines(path.parent):
            say(line)
    return path if path.is_dir() else None


def resolve(name: str) -> Path:
    """Like find, but a missing name raises MmvError telling the user the command that fetches it."""
    path = find(name)
    if path is None:
        shown = name.strip()
        raise MmvError(f"{shown} is not downloaded; run `mmv download {shown}`")
    return path


@dataclass(frozen=True)
class Entry:
    name: str  # the download name recorded in the manifest (directory name when there is none)
    path: Path
    size: int  # bytes of every file in the directory
    files: int
    manifest: dict[str, Any]


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def entries() -> list[Entry]:
    """Every complete name in the cache, sorted by name."""
    root = cache_root()
    if not root.is_dir():
        return []
    found = []
    with os_errors(f"cannot read the download cache at {root}", "check its permissions, or set MMV_HOME"):
        for path in sorted(root.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            files = [p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST]
            manifest = read_manifest(path)
            found.append(
                Entry(manifest.get("name", path.name), path, sum(p.stat().st_size for p in files), len(files), manifest)
            )
    return found


@dataclass(frozen=True)
class Partial:
    name: str  # the download name as typed (from the staged manifest; the folder name when there is none)
    revision: str | None  # the revision it was asked at, if any
    size: int  # bytes kept


def partial_downloads() -> list[Partial]:
    """Every interrupted download that the next `mmv download` of the same name (and revision) resumes."""
    staging = cache_root() / STAGING
    if not staging.is_dir():
        return []
    found = []
    with os_errors(f"cannot read the download cache at {staging}", "check its permissions, or set MMV_HOME"):
        for path in sorted(staging.iterdir()):
            if path.is_dir():
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)
                if size:
                    manifest = read_manifest(path)
                    found.append(Partial(manifest.get("name") or path.name, manifest.get("revision"), size))
    return found


def staging_dir(name: str) -> Path:
    """The resumable work area of `name`; kept across interruptions, removed once the name is installed."""
    return cache_root() / STAGING / dir_name(name)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def install(name: str, staged: Path, manifest: dict[str, Any]) -> Path:
    """Move a fully verified staging directory into place atomically; replaces an older copy of the same name."""
    write_manifest(staged, manifest)
    final = path_of(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)  # what an interrupted earlier install left beside it
    replace_dir(staged, final)
    return final


def missing(names: list[str]) -> list[str]:
    """The names (as typed) that are neither cached nor partly downloaded."""
    return [name for name in names if not path_of(name).exists() and not staging_dir(name).exists()]


def remove(name: str) -> Path:
    """Delete a cached name (and any partial download of it); MmvError if neither exists."""
    path = path_of(name)
    staged = staging_dir(name)
    if missing([name]):
        raise MmvError(f"{canonical(name)} is not in the cache at {cache_root()}; `mmv cache list` shows what is")
    with os_errors(f"cannot remove {canonical(name)} from the cache", "check the permissions of that folder"):
        if path.exists():
            # Move aside before deleting so an interrupted rm never leaves a half-deleted name that looks complete.
            doomed = path.with_name(f".rm-{path.name}-{os.getpid()}")
            os.replace(path, doomed)
            shutil.rmtree(doomed)
        if staged.exists():
            shutil.rmtree(staged)
    return path


@contextlib.contextmanager
def os_errors(doing: str, hint: str) -> Iterator[None]:
    """Turn an OSError into one sentence: what failed, on which file, what the OS said, what to do about it."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = "free some space, or set MMV_HOME to a larger disk"
        raise MmvError(f"{doing}: {os_said(exc)}; {hint}") from exc


def os_said(exc: OSError) -> str:
    """What the OS said, and about which file: 'Permission denied (/x/y)'."""
    said = exc.strerror or str(exc) or type(exc).__name__
    files = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    return f"{said} ({files})" if files else said


def human_size(n: float | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, like the Hub shows them)."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
