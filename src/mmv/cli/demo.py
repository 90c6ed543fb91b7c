"""`mmv demo`: make data, train a tiny VLM from scratch, evaluate it and answer a question, offline, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from mmv.cli.common import console, emit_json, handle_errors


@handle_errors(flags={"out": "--out"})
def demo(
    out: Path = typer.Option(Path("mmv-demo"), "--out", help="Folder for the data, runs, plots (must be new)."),
    minutes: float | None = typer.Option(
        None,
        "--minutes",
        min=0.05,
        help="Training length, as minutes on a 2-core laptop CPU (default 8; 4 with --hires); a faster machine "
        "finishes sooner with the same result.",
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same data and the same model."),
    rows: int = typer.Option(4000, "--rows", min=50, help="Synthetic rows per training split."),
    threads: int = typer.Option(
        1, "--threads", min=1, help="CPU threads for torch (one is fastest for this tiny model and bit-reproducible)."
    ),
    encoder: str = typer.Option(
        "siglip", "--encoder", help="Architecture of the encoder trained from scratch: siglip | clip | dinov2."
    ),
    hires: bool = typer.Option(
        False,
        "--hires",
        help="The high-resolution task (the pattern of one-pixel lines in a square of a 256x256 image: stripes "
        "across, up and down, or a checkerboard, which only --tiles 4 shows; a 128-pixel encoder: 16 tokens a view) "
        "instead of the scenes; --minutes counts its steps at 0.25 s each.",
    ),
    tiles: int = typer.Option(1, "--tiles", metavar="N", help="Train with up to N tiles per image (hires: 4)."),
    video: bool = typer.Option(
        False, "--video", help="The video task (which way a shape moves, which shape appears last) on MP4 clips."
    ),
    frames: int = typer.Option(
        2,
        "--frames",
        metavar="N",
        help="Frames sampled from each clip (with --video; 2 by default: the 3rd and 7th of its 8).",
    ),
) -> None:
    """Synthetic shapes -> pretrain -> SFT -> held-out accuracy, a loss curve and one answered question."""
    from mmv.demo import DemoConfig, run_demo
    from mmv.errors import MmvError

    if hires and video:
        raise MmvError("--hires and --video are two different tasks: choose one")
    config = DemoConfig(
        seed=seed,
        minutes=minutes,
        n=rows,
        threads=threads,
        encoder=encoder,
        task="hires" if hires else "video" if video else "shapes",
        tiles=tiles,
        frames=frames,
    )
    result = run_demo(out, config, say=lambda text: console.print(f"[bold]{text}[/]"))
    console.print(summary_table(result))
    ev = result.eval
    console.print(
        f"answer loss {ev['mean_loss']:.4f} (perplexity {ev['perplexity']:.4f}); time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()),
        markup=False,
    )
    example = result.example
    console.print(f"\n[bold]Q:[/] {example['question']}  ({example['image']})\n[bold]A:[/] {example['answer']}")
    question = "Which shape appears last?" if video else "What colour are the shapes?"
    more = f'--frames {frames} --prompt "{question}"' if video else f'--prompt "{question}"'
    console.print(
        f"\nloss curve: {result.paths['loss_curve']}\nask more:   mmv chat {example['image']} "
        f"--model {result.paths['model']} --temperature 0 {more}",
        markup=False,
    )
    emit_json(
        {
            "out": str(out),
            "seed": seed,
            "minutes": config.training_minutes,
            "encoder": encoder,
            "task": config.task,
            "tiles": tiles,
            "frames": frames if video else None,
            "steps": dict(zip(("pretrain", "sft"), config.steps, strict=True)),
            "accuracy": result.eval["accuracy"],
            "by_kind": result.by_kind,
            "eval": result.eval,
            "losses": result.losses,
            "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
            "total_seconds": round(sum(result.seconds.values()), 2),
            "example": example,
            **result.paths,
        }
    )


def summary_table(result):
    from rich.table import Table

    table = Table(title="mmv demo: held-out questions", title_justify="left")
    table.add_column("question")
    table.add_column("exact", justify="right")
    table.add_column("accuracy", justify="right")
    for kind, counts in result.by_kind.items():
        table.add_row(kind, f"{counts['correct']}/{counts['total']}", f"{counts['correct'] / counts['total']:.1%}")
    ev = result.eval
    table.add_row("[bold]all[/]", f"{ev['correct']}/{ev['evaluated']}", f"[bold]{ev['accuracy']:.1%}[/]")
    return table
