"""The interactive side of `mmv chat`: a REPL on a terminal, or one prompt per line from a pipe.

Commands: /image PATH... attaches images to the next turn, /clear, /save FILE, /help, /exit. Ctrl-C stops the reply
being generated, not the session.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.markup import escape

from mmv.chat import ChatSession, Reply
from mmv.cli.common import console, emit_json, options
from mmv.errors import MmvError
from mmv.fsio import atomic_write_text
from mmv.images import open_image

HELP = """[bold]commands[/]
  /image PATH...   attach images to your next message
  /clear           forget the conversation
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
    atomic_write_text(path, json.dumps(session.transcript(), ensure_ascii=False, indent=2))
    return path


def run_command(session: ChatSession, line: str) -> bool:
    """Handle a /command; return False when the session should end."""
    name, _, rest = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        console.print(HELP)
    elif name == "/clear":
        session.clear()
        console.print("[dim]conversation cleared[/]")
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
    return reply


def run_repl(session: ChatSession, interactive: bool) -> None:
    if interactive:
        console.print("[bold]mmv chat[/] · /help for commands · Ctrl-D to quit")
    replies: list[Reply] = []
    errors = 0
    for line in read_lines(interactive):
        text = line.strip()
        if not text:
            continue
        try:
            if text.startswith("/"):
                if not run_command(session, text):
                    break
                continue
            replies.append(answer(session, text, interactive))
        except MmvError as exc:
            errors += 1
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            if not interactive and not options.json:
                continue
    emit_json(
        {
            "turns": len(replies),
            "errors": errors,
            "replies": [
                {
                    "reply": r.text,
                    "new_tokens": r.new_tokens,
                    "ttft_ms": round(r.ttft_ms, 2),
                    "vision_ms": round(r.vision_ms, 2),
                    "decode_tokens_per_s": round(r.decode_tokens_per_s, 2),
                    "reused_tokens": r.reused_tokens,
                }
                for r in replies
            ],
        }
    )
    if errors and not interactive:
        raise SystemExit(2)
