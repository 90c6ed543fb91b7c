"""`mmv download NAME...`: fetch encoders, weights and datasets into the verified cache."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mmv.cli.common import console, emit_json, handle_errors, options
from mmv.errors import MmvError


def _progress():
    """Bytes, speed and time left per file, on stderr."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        # Off a terminal the bars cannot redraw; they would only print a stray blank line (before an error, too).
        disable=not console.is_terminal,
    )


@handle_errors(
    flags={"source": "--source", "endpoint": "--endpoint", "token": "--token", "to": "--to", "revision": "--revision"}
)
def download(
    names: list[str] = typer.Argument(
        None, metavar="NAME...", help="Names from --list, or hf:OWNER/REPO(/FILE)(@REV), hf-dataset:..."
    ),
    to: Path = typer.Option(None, "--to", help="Also put each name at DIR/<name> (a copy; see --link)."),
    link: bool = typer.Option(False, "--link", help="With --to: a symlink into the cache instead of a copy."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Server URL, e.g. a Hub mirror (default: $HF_ENDPOINT)."),
    source: str = typer.Option("hf", "--source", help="hf (Hugging Face Hub) or modelscope (the gongjy/ mirrors)."),
    token: str = typer.Option(None, "--token", help="Access token (default: $HF_TOKEN, or $MODELSCOPE_API_TOKEN)."),
    list_names: bool = typer.Option(False, "--list", help="Show every name, what it holds, and what is cached."),
) -> None:
    """Download into the cache (resumable, verified); other commands find the names there."""
    from mmv.hub.cache import human_size
    from mmv.hub.fetch import SOURCES, FetchOptions, check_names, export
    from mmv.hub.fetch import download as fetch_name

    if list_names:
        return _list()
    if not names:
        raise MmvError("no name given: expected one or more names (see `mmv download --list`)")
    if source not in SOURCES:
        raise MmvError(f"unknown --source {source!r}: expected one of {', '.join(SOURCES)}")
    if link and to is None:
        raise MmvError("--link only makes sense with --to DIR")
    fetch_options = FetchOptions(source=source, endpoint=endpoint, token=token, revision=revision)
    check_names(names, fetch_options)  # every unknown (or, offline, uncached) name in one error, before any download
    start = time.perf_counter()
    items = []
    with _progress() as progress:
        for name in names:
            result = fetch_name(name, fetch_options, progress)
            placed = export(result.path, to, link) if to is not None else None
            items.append((result, placed))
    seconds = time.perf_counter() - start
    for result, placed in items:
        state = "already cached" if result.already_cached else f"downloaded {human_size(result.downloaded)}"
        where = f" -> {placed}" if placed else ""
        files = f"{result.files} file{'s' if result.files != 1 else ''}"
        console.print(
            f"[green]✓[/] {result.name}: {files}, {human_size(result.size)} ({state}) at {result.path}{where}",
            markup=True,
            soft_wrap=True,
            highlight=False,
        )
        if not options.json:
            typer.echo(str(placed or result.path))
    emit_json(
        {
            "command": "download",
            "names": [
                {
                    "name": r.name,
                    "path": str(r.path),
                    "files": r.files,
                    "bytes": r.size,
                    "downloaded_bytes": r.downloaded,
                    "already_cached": r.already_cached,
                    "source": r.source,
                    "commits": r.commits,
                    "to": str(p) if p else None,
                }
                for r, p in items
            ],
            "downloaded_bytes": sum(r.downloaded for r, _ in items),
            "seconds": round(seconds, 3),
        }
    )


def _list() -> None:
    from rich.console import Console
    from rich.table import Table

    from mmv.hub import cache
    from mmv.hub.cache import human_size
    from mmv.hub.registry import ALIASES, NAMES

    rows = []
    for name, artifact in NAMES.items():
        path = cache.find(name)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path else artifact.size_hint
        aliases = [a for a, target in ALIASES.items() if target == name]
        rows.append(
            {
                "name": name,
                "aliases": aliases,
                "contents": artifact.summary,
                "repos": [p.repo_id for p in artifact.parts],
                "bytes": size,
                "size_exact": path is not None,
                "cached": str(path) if path else None,
            }
        )
    if options.json:
        emit_json({"command": "download --list", "cache": str(cache.cache_root()), "names": rows})
        return
    table = Table(title=f"cache: {cache.cache_root()}", title_justify="left")
    for column in ("name", "contents", "size", "cached"):
        table.add_column(column, no_wrap=column != "contents")
    for row in rows:
        label = row["name"] + "".join(f" ({a})" for a in row["aliases"])
        size = human_size(row["bytes"]) if row["bytes"] else "?"
        table.add_row(
            label,
            row["contents"],
            size if row["size_exact"] else f"~{size}" if row["bytes"] else "?",
            "yes" if row["cached"] else "-",
        )
    Console(highlight=False).print(table)
    console.print(
        "also: hf:OWNER/REPO[/FILE][@REV] and hf-dataset:OWNER/REPO[/FILE][@REV] for any Hub repository", markup=False
    )
