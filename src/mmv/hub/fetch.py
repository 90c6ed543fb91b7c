"""Fetch a name into the cache: list its files, download them into staging, verify, install atomically.

A name already in the cache is returned without touching the network (so cached names work offline); asking for a
different --revision than the cached one downloads again and replaces it in one rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmv.errors import MmvError
from mmv.fsio import staged_folder
from mmv.hub import cache, validate
from mmv.hub.fetch_hf import HfSource
from mmv.hub.limits import Timeouts
from mmv.hub.listing import Listing
from mmv.hub.registry import Artifact, lookup, lookup_all
from mmv.hub.transfer import Transfer, fetch, part_path
from mmv.hub.validate import MANIFEST, PARTS

SOURCES = ("hf", "modelscope")


@dataclass
class FetchOptions:
    source: str = "hf"  # "hf" (huggingface_hub) or "modelscope"
    endpoint: str | None = None  # None: HF_ENDPOINT / MODELSCOPE_DOMAIN / the public site
    token: str | None = None  # None: HF_TOKEN (or the saved login) / MODELSCOPE_API_TOKEN
    revision: str | None = None  # branch, tag or commit; None: the default branch, or whatever is cached
    retries: int = 5  # resumes after a dropped connection before giving up
    timeouts: Timeouts = field(default_factory=Timeouts)  # connect / read / give-up-after-silence limits


@dataclass
class FetchResult:
    name: str
    path: Path
    files: int
    size: int  # bytes of the cached name
    downloaded: int = 0  # bytes transferred by this call
    already_cached: bool = False
    source: str | None = None
    commits: dict[str, str | None] = field(default_factory=dict)  # repo -> commit


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def make_source(options: FetchOptions) -> Any:
    if options.source == "hf":
        return HfSource(options.endpoint, options.token, options.timeouts)
    if options.source == "modelscope":
        from mmv.hub.fetch_modelscope import ModelScopeSource

        return ModelScopeSource(options.endpoint, options.token, options.timeouts)
    raise MmvError(f"unknown source {options.source!r}: expected one of {', '.join(SOURCES)}", option="source")


def check_names(names: list[str], options: FetchOptions) -> None:
    """Refuse, in one sentence naming all of them, names that are unknown, or not cached while offline."""
    artifacts = lookup_all(names)
    if options.revision is not None:
        validate.revision(options.revision, "the requested revision", option="revision")
    if offline():
        absent = [a.name for a in artifacts if not _cached(a, options.revision or a.revision)]
        if absent:
            raise MmvError(
                f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in the cache at {cache.cache_root()} "
                "and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download" + (" it" if len(absent) == 1 else " them")
            )


def download(name: str, options: FetchOptions, progress: Any = None) -> FetchResult:
    """Make `name` present in the cache and return where it is. `progress` is a rich Progress or None."""
    check_names([name], options)
    artifact = lookup(name)
    revision = options.revision or artifact.revision
    existing = _cached(artifact, revision)
    if existing is not None:
        return _result(artifact.name, existing, already_cached=True)
    source = make_source(options)
    staging = cache.staging_dir(artifact.name)
    with _lock(staging):
        listings = [source.list(part, revision) for part in artifact.parts]
        _check_collisions(artifact, listings)
        with _disk():
            staging.mkdir(parents=True, exist_ok=True)
            # Names the partial download for `mmv cache list` (replaced by the full manifest on install).
            cache.write_manifest(staging, {"name": artifact.name, "revision": revision})
            _check_space(listings, staging)
        downloaded = _fetch_all(source, listings, staging, options, progress)
        with _disk():
            _prune(staging, listings)
            manifest = _manifest(artifact, revision, source, listings)
            path = cache.install(artifact.name, staging, manifest)
    result = _result(artifact.name, path, already_cached=False)
    result.downloaded = downloaded
    return result


def _cached(artifact: Artifact, revision: str | None) -> Path | None:
    existing = cache.find(artifact.name)
    return existing if existing is not None and _satisfies(cache.read_manifest(existing), revision) else None


def export(path: Path, dest_root: Path, link: bool) -> Path:
    """Put a cached name at `<dest_root>/<name>` as a copy (default) or a symlink; never overwrites other files."""
    dest = dest_root / path.name
    with cache.os_errors(f"cannot put {path.name} at {dest}", "pick another --to directory"):
        if dest.is_symlink() and dest.resolve() == path.resolve():
            return dest
        if dest.exists() or dest.is_symlink():
            if not link and _same_files(path, dest):
                return dest
            raise MmvError(
                f"{dest} already exists and differs from the cached {path.name}; remove it or pick another directory",
                option="to",
            )
        dest_root.mkdir(parents=True, exist_ok=True)
        if link:
            dest.symlink_to(path.resolve(), target_is_directory=True)
            return dest
        # staged beside dest under fsio's temporary names, so a copy killed midway is cleaned by the next one
        with staged_folder(dest) as staged:
            shutil.copytree(path, staged, ignore=shutil.ignore_patterns(MANIFEST), dirs_exist_ok=True)
    return dest


def _satisfies(manifest: dict[str, Any], revision: str | None) -> bool:
    """A cached copy serves any request without a revision, and those naming its revision or one of its commits."""
    if revision is None:
        return True
    commits = [p.get("commit") for p in manifest.get("parts", [])]
    return revision == manifest.get("revision") or (bool(commits) and all(c == revision for c in commits))


def _fetch_all(source: Any, listings: list[Listing], staging: Path, options: FetchOptions, progress: Any) -> int:
    """Fetch every file; returns the bytes that came over the network (resumed and verified bytes excluded)."""
    received = 0
    for listing in listings:
        for remote in listing.files:
            task = progress.add_task(remote.path, total=remote.size) if progress is not None else None
            transfer = Transfer(
                session=source.session(),
                headers=source.headers,
                check=lambda response, remote, listing=listing: source.check(response, remote, listing),
                retries=options.retries,
                timeouts=options.timeouts,
                on_bytes=(lambda n, task=task: progress.advance(task, n)) if progress is not None else None,
            )
            with _disk(remote.path):
                fetch(transfer, remote, staging)
            received += transfer.received
    return received


def _disk(file: str | None = None) -> contextlib.AbstractContextManager[None]:
    """An OSError while writing the cache, as one sentence naming the file, what the OS said and what to do."""
    what = f" {file} into" if file else ""
    return cache.os_errors(
        f"cannot write{what} the download cache at {cache.cache_root()}",
        "make that folder writable, or set MMV_HOME to another one",
    )


def _check_collisions(artifact: Artifact, listings: list[Listing]) -> None:
    """Two parts may not bring the same path, and no path may be both a file and a folder."""
    seen: dict[str, str] = {}
    for listing in listings:
        for remote in listing.files:
            if remote.path in seen:
                raise MmvError(
                    f"{artifact.name}: {remote.path} exists in both {seen[remote.path]} and "
                    f"{listing.repo_id}; cannot put both in one folder"
                )
            seen[remote.path] = listing.repo_id
    for path in seen:
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        while folder:
            if folder in seen:
                raise MmvError(
                    f"{artifact.name}: {folder} is listed both as a file and as the folder of {path}; "
                    "refusing to download from this listing"
                )
            folder = folder.rsplit("/", 1)[0] if "/" in folder else None


def _check_space(listings: list[Listing], staging: Path) -> None:
    need = 0
    for listing in listings:
        for remote in listing.files:
            have = staging / remote.path
            part = part_path(staging, remote)
            done = have.stat().st_size if have.is_file() else part.stat().st_size if part.is_file() else 0
            need += max(remote.size - done, 0)
    free = shutil.disk_usage(staging).free
    if need > free:
        raise MmvError(
            f"not enough disk space in {cache.cache_root()}: the download needs "
            f"{cache.human_size(need)} more and only {cache.human_size(free)} is free; free some space "
            "or set MMV_HOME to a larger disk"
        )


def _prune(staging: Path, listings: list[Listing]) -> None:
    """Drop leftovers (partial files, files of an older listing) so the installed folder holds exactly the listing."""
    wanted = {remote.path for listing in listings for remote in listing.files} | {MANIFEST}
    shutil.rmtree(staging / PARTS, ignore_errors=True)
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _manifest(artifact: Artifact, revision: str | None, source: Any, listings: list[Listing]) -> dict[str, Any]:
    return {
        "name": artifact.name,
        "source": source.name,
        "endpoint": source.endpoint,
        "revision": revision,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parts": [
            {"repo_id": li.repo_id, "repo_type": li.repo_type, "revision": li.revision, "commit": li.commit}
            for li in listings
        ],
        "files": {
            r.path: {"size": r.size, "sha256": r.sha256, "git_sha1": r.git_sha1} for li in listings for r in li.files
        },
    }


def _result(name: str, path: Path, already_cached: bool) -> FetchResult:
    manifest = cache.read_manifest(path)
    files = [p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST]
    commits = {p.get("repo_id"): p.get("commit") for p in manifest.get("parts", [])}
    return FetchResult(
        name, path, len(files), sum(p.stat().st_size for p in files), 0, already_cached, manifest.get("source"), commits
    )


def _same_files(a: Path, b: Path) -> bool:
    def listing(root: Path) -> dict[str, int]:
        return {
            p.relative_to(root).as_posix(): p.stat().st_size
            for p in root.rglob("*")
            if p.is_file() and p.name != MANIFEST
        }

    return b.is_dir() and listing(a) == listing(b)


@contextlib.contextmanager
def _lock(staging: Path) -> Iterator[None]:
    """One download of a name at a time: two would write the same partial files."""
    lock_path = staging.with_name(staging.name + ".lock")
    with _disk():
        staging.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # held for the whole download: the lock lives as long as this file is open
    with handle as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks, proceed unguarded
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise MmvError(
                f"another `mmv download` of {staging.name} is running (lock {lock_path}); wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
