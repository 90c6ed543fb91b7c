"""`mmv eval`: answer the last question of each row greedily and score it against the reference answer."""

from __future__ import annotations

from pathlib import Path

import typer

from mmv.cli.common import MODEL_FLAGS, console, emit_json, handle_errors
from mmv.cli.model_options import ModelChoice, load_chosen_model, takes_model_options


@handle_errors(flags={**MODEL_FLAGS, "out": "--out", "frames": "--frames N"})
@takes_model_options
def eval_command(
    files: list[str] = typer.Argument(None, metavar="[FILE...]", help="More parquet files (after --data)."),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="A .pth/.safetensors file, a run directory, a transformers folder or a downloaded name.",
    ),
    *,
    choice: ModelChoice,  # --vision, --tokenizer, --device ... (takes_model_options)
    data: list[str] = typer.Option(
        None, "--data", metavar="FILE", help="Parquet file(s) of the published schema; --data A B C or repeated."
    ),
    metric: str = typer.Option(
        "exact", help="exact (equal up to whitespace) | contains (reference inside the answer, any case)."
    ),
    batch_size: int = typer.Option(16, min=1, help="Rows generated together."),
    max_new_tokens: int = typer.Option(64, min=1, help="Answers are cut at this many tokens."),
    limit: int = typer.Option(None, min=1, help="Evaluate only the first N usable rows."),
    out: Path = typer.Option(None, "--out", help="Per-sample results as JSON lines."),
    think: bool = typer.Option(False, "--think", help="Open the <think> block in the generation prompt."),
    frames: int = typer.Option(
        None, "--frames", metavar="N", help="Frames sampled from each row's video (default: as the run trained)."
    ),
) -> None:
    """Accuracy, answer loss and perplexity, and throughput of a model on held-out conversations."""
    from mmv.device import check_device, check_dtype
    from mmv.errors import MmvError
    from mmv.eval.runner import EvalConfig
    from mmv.eval.runner import evaluate as run_eval
    from mmv.eval.scoring import SCORING_METRICS
    from mmv.fsio import check_writable, refuse_input_as_output

    paths = [*(data or []), *(files or [])]
    if not paths:
        raise MmvError("no --data given: expected one or more parquet files")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise MmvError(f"no such data file: {', '.join(missing)}")
    if metric not in SCORING_METRICS:
        raise MmvError(f"--metric must be one of {', '.join(SCORING_METRICS)}, not {metric!r}")
    check_device(choice.device)
    check_dtype(choice.dtype)
    if out is not None:
        refuse_input_as_output(out, paths)
        check_writable(out)  # before the model loads and the evaluation runs, not after
    loaded, threads = load_chosen_model(model, choice, frames=frames, need_vision=False, spinner=False)
    config = EvalConfig(
        metric=metric, batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit, thinking=think
    )
    from rich.markup import escape

    from mmv.cli.data import progress

    with progress() as bar:
        task = bar.add_task("evaluating", total=limit)
        report = run_eval(loaded, paths, config, out, on_batch=lambda n: bar.advance(task, n))
    summary = report.summary()
    console.print(report_table(summary))
    for example in report.skips.examples:
        console.print(f"[yellow]skipped[/] {escape(example)}", highlight=False)
    emit_json(
        {"model": str(loaded.weights), "data": paths, "out": str(out) if out else None, **summary, "threads": threads}
    )


def report_table(summary: dict):
    from rich.table import Table

    table = Table(title="evaluation", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    accuracy = summary["accuracy"]
    table.add_row(f"accuracy ({summary['metric']})", f"{accuracy:.1%}  ({summary['correct']}/{summary['evaluated']})")
    if summary["mean_loss"] is not None:
        table.add_row("answer loss / perplexity", f"{summary['mean_loss']:.4f} / {summary['perplexity']:.3f}")
    table.add_row("throughput", f"{summary['samples_per_s']:.1f} samples/s, {summary['tokens_per_s']:.1f} tokens/s")
    skipped = sum(summary["skipped"].values())
    if skipped:
        table.add_row("skipped rows", ", ".join(f"{n} {k}" for k, n in summary["skipped"].items()))
    return table
