"""`mmv cache list | rm`: what the download cache holds, and removing names from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from mmv.cli.common import console, emit_json, handle_errors, options
from mmv.errors import MmvError

if TYPE_CHECKING:
    from mmv.hub.cache import Partial

app = typer.Typer(
    help="Show or remove downloaded names (the cache of `mmv download`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("list")
@handle_errors
def list_cache() -> None:
    """Every cached name with its size and path, and any partial download waiting to resume."""
    from rich.console import Console
    from rich.table import Table

    from mmv.hub import cache

    entries = cache.entries()
    partial = cache.partial_downloads()
    total = sum(e.size for e in entries)
    if options.json:
        emit_json(
            {
                "command": "cache list",
                "cache": str(cache.cache_root()),
                "bytes": total,
                "names": [
                    {
                        "name": e.name,
                        "path": str(e.path),
                        "bytes": e.size,
                        "files": e.files,
                        "source": e.manifest.get("source"),
                        "revision": e.manifest.get("revision"),
                    }
                    for e in entries
                ],
                "partial": [{"name": p.name, "revision": p.revision, "bytes": p.size} for p in partial],
            }
        )
        return
    table = Table(title=f"cache: {cache.cache_root()} ({cache.human_size(total)})", title_justify="left")
    for column in ("name", "size", "files", "source", "path"):
        table.add_column(column, no_wrap=True)
    for e in entries:
        table.add_row(e.name, cache.human_size(e.size), str(e.files), e.manifest.get("source") or "-", str(e.path))
    Console(highlight=False).print(table)
    for p in partial:
        console.print(
            f"partial download of {p.name}: {cache.human_size(p.size)} kept; `{_resume_command(p)}` resumes it",
            markup=False,
            soft_wrap=True,
        )


def _resume_command(partial: Partial) -> str:
    """The `mmv download` line that continues a partial download: its name, and its revision when the name does
    not already carry it."""
    import shlex

    from mmv.hub.registry import lookup

    words = ["mmv", "download", partial.name]
    try:
        implied = lookup(partial.name).revision
    except MmvError:
        implied = None
    if partial.revision and partial.revision != implied:
        words += ["--revision", partial.revision]
    return shlex.join(words)


@app.command("rm")
@handle_errors
def remove(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Names as `mmv cache list` shows them."),
) -> None:
    """Delete cached names (and their partial downloads)."""
    from mmv.hub import cache

    absent = cache.missing(names)
    if absent:
        shown = ", ".join(name.strip() for name in absent)
        raise MmvError(
            f"{shown} {'is' if len(absent) == 1 else 'are'} not in the cache at {cache.cache_root()}; nothing was "
            "removed; `mmv cache list` shows what is"
        )
    removed = []
    for name in names:
        path = cache.remove(name)
        console.print(f"removed {name} ({path})")
        removed.append({"name": name, "path": str(path)})
    emit_json({"command": "cache rm", "removed": removed})
