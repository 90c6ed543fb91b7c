"""The interactive side of `mmv chat`: a REPL on a terminal, or one prompt per line from a pipe.

Commands: /image PATH... attaches images to the next turn, /clear, /save FILE, /help, /exit. Ctrl-C stops the reply
being generated, not the session; any other failure (a bad line, a file that cannot be written, a conversation
longer than the model's positions) is one error line, and the session goes on. With --json the session prints one
JSON object when it ends (see `session_summary`), as every command does.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from mmv.chat import ChatSession, Reply
from mmv.cli.common import console, emit_json, options
from mmv.errors import MmvError
from mmv.fsio import atomic_write_text
from mmv.images import open_image

if TYPE_CHECKING:
    from PIL import Image

HELP = """[bold]commands[/]
  /image PATH...   attach images to your next message
  /clear           forget the conversation (the command line's images stay, for the next message)
  /save FILE       write the transcript as JSON
  /help            this help
  /exit            quit (or Ctrl-D)
Ctrl-C stops the reply being generated."""


class Interrupt:
    """While a reply streams, Ctrl-C sets a flag that cancels generation instead of killing the process."""

    def __init__(self) -> None:
        self.hit = False

    def __enter__(self) -> Interrupt:
        self.hit = False
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_: object) -> None:
        self.hit = True

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def read_lines(interactive: bool) -> Iterator[str]:
    # Bytes that are not UTF-8 become lone surrogates instead of an exception that would end the session; the
    # session refuses such a message with one line (mmv.chat.check_text), and /image still finds such a file name.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    if not interactive:
        for line in sys.stdin:
            yield line.rstrip("\n")
        return
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    while True:
        try:
            yield input("you> ")
        except KeyboardInterrupt:
            console.print("\n[dim](use /exit or Ctrl-D to quit)[/]")
        except EOFError:
            console.print()
            return


def save_transcript(session: ChatSession, target: str) -> Path:
    path = Path(target).expanduser()
    try:
        atomic_write_text(path, json.dumps(session.transcript(), ensure_ascii=False, indent=2))
    except OSError as exc:
        raise MmvError(
            f"cannot save the transcript to {path}: {exc.strerror or exc}; the conversation goes on"
        ) from None
    return path


def reply_summary(reply: Reply) -> dict[str, Any]:
    """What --json prints for a one-shot reply, and for each reply of a session."""
    return {
        "reply": reply.text,
        "new_tokens": reply.new_tokens,
        "ttft_ms": round(reply.ttft_ms, 2),
        "vision_ms": round(reply.vision_ms, 2),
        "decode_tokens_per_s": round(reply.decode_tokens_per_s, 2),
        "stopped": reply.stopped,
        "reused_tokens": reply.reused_tokens,
    }


def session_summary(replies: list[Reply], failed: list[dict[str, Any]]) -> dict[str, Any]:
    """What --json prints when a REPL or piped session ends: its replies in order, and the input lines (numbered
    from 1) that failed with their error."""
    return {
        "turns": len(replies),
        "errors": len(failed),
        "replies": [reply_summary(r) for r in replies],
        "failed": failed,
    }


def note_positions(session: ChatSession, reply: Reply) -> None:
    if reply.positions_full:
        positions = session.loaded.model.config.max_position_embeddings
        console.print(
            f"[yellow]note:[/] the reply stopped at the model's {positions} positions (max_position_embeddings)",
            soft_wrap=True,
        )


def run_command(session: ChatSession, line: str, images: list[tuple[str, Image.Image]]) -> bool:
    """Handle a /command; return False when the session should end. `images`: the command line's images."""
    name, _, rest = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        console.print(HELP)
    elif name == "/clear":
        session.clear()
        for image_name, image in images:
            session.attach(image_name, image)
        kept = f"; {', '.join(n for n, _ in images)} attached to your next message" if images else ""
        console.print(f"[dim]conversation cleared{escape(kept)}[/]", soft_wrap=True)
    elif name == "/image":
        paths = rest.split()
        if not paths:
            raise MmvError("usage: /image PATH [PATH ...]")
        for path in paths:
            session.attach(path, open_image(path))
        console.print(f"[dim]{len(session.pending)} image(s) attached to your next message[/]")
    elif name == "/save":
        if not rest.strip():
            raise MmvError("usage: /save FILE")
        console.print(f"[dim]saved {escape(str(save_transcript(session, rest.strip())))}[/]")
    else:
        raise MmvError(f"unknown command {name}; /help lists them")
    return True


def answer(session: ChatSession, prompt: str, interactive: bool) -> Reply:
    if interactive:
        console.print("[bold cyan]mmv>[/] ", end="")
    with Interrupt() as interrupt:

        def show(piece: str) -> bool:
            if not options.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
            return interrupt.hit

        reply = session.ask(prompt, on_text=show)
    if not options.json:
        sys.stdout.write("\n")
        sys.stdout.flush()
    stopped = " · stopped" if reply.stopped == "cancelled" else ""
    reused = f" · {reply.reused_tokens} history tokens reused" if reply.reused_tokens else ""
    console.print(
        f"[dim]ttft {reply.ttft_ms:.0f} ms · vision {reply.vision_ms:.0f} ms · "
        f"{reply.decode_tokens_per_s:.1f} tok/s · {reply.new_tokens} tokens{reused}{stopped}[/]"
    )
    note_positions(session, reply)
    return reply


def run_repl(session: ChatSession, interactive: bool, threads: int) -> None:
    """Read lines until /exit or the end of input; in a pipe, exit 2 at the end if any line failed."""
    if interactive:
        console.print("[bold]mmv chat[/] · /help for commands · Ctrl-D to quit")
    images = list(session.pending)  # the command line's: /clear attaches them again
    replies: list[Reply] = []
    failed: list[dict[str, Any]] = []
    for number, line in enumerate(read_lines(interactive), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            if text.startswith("/"):
                if not run_command(session, text, images):
                    break
                continue
            replies.append(answer(session, text, interactive))
        except MmvError as exc:
            failed.append({"line": number, "error": str(exc)})
            console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    emit_json({**session_summary(replies, failed), "threads": threads})
    if failed and not interactive:
        raise SystemExit(2)
