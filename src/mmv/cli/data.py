"""`mmv data synth | from-llava | check | preview | rechunk | cache-features`: make, convert, validate, look at,
re-lay and pre-encode datasets."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import typer

from mmv.cli.common import console, emit_json, handle_errors
from mmv.errors import MmvError

app = typer.Typer(
    help="Make, convert, validate and look at datasets in the published parquet schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def progress():
    """A rich progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@app.command("synth")
@handle_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Folder for pretrain.parquet, sft.parquet, eval.parquet, tokenizer/."),
    n: int = typer.Option(2000, "--n", min=1, help="Rows in pretrain.parquet and in sft.parquet."),
    eval_n: int = typer.Option(None, "--eval-n", min=1, help="Held-out rows in eval.parquet [default: n/10]."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same files."),
    tokenizer: bool = typer.Option(True, "--tokenizer/--no-tokenizer", help="Also train a BPE tokenizer on it."),
    hires: bool = typer.Option(
        False,
        "--hires",
        help="The high-resolution task: the pattern of one-pixel lines in a square of a 256x256 image (stripes "
        "across, up and down, or a checkerboard), for a 128-pixel encoder with --tiles 4.",
    ),
    video: bool = typer.Option(
        False, "--video", help="The video task: 8-frame MP4 clips of shapes that move or appear (needs PyAV)."
    ),
) -> None:
    """Draw scenes of coloured shapes with captions and questions (multi-turn, two-image and text-only rows)."""
    from mmv.synth.dataset import SynthConfig, synthesize

    if hires and video:
        raise MmvError("--hires and --video are two different tasks: choose one")
    task = "hires" if hires else "video" if video else "shapes"
    config = SynthConfig(n=n, eval_n=eval_n or max(30, n // 10), seed=seed, task=task)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("drawing scenes", total=2 * config.n + config.eval_n)
        result = synthesize(out, config, tokenizer=tokenizer, on_row=lambda split: bar.advance(task))
    seconds = time.perf_counter() - start
    for split, path in result.files.items():
        console.print(f"{path}  {result.rows[split]:,} rows  {path.stat().st_size / 1e6:.1f} MB")
    if result.tokenizer is not None:
        console.print(f"{result.tokenizer}/  byte-level BPE, {result.vocab_size} tokens")
    console.print(f"done in {seconds:.1f} s")
    emit_json(
        {
            "out": str(out),
            "files": {k: str(v) for k, v in result.files.items()},
            "rows": result.rows,
            "tokenizer": str(result.tokenizer) if result.tokenizer else None,
            "vocab_size": result.vocab_size,
            "seed": seed,
            "seconds": round(seconds, 2),
        }
    )


@app.command("from-llava")
@handle_errors(flags={"out": "--out"})
def from_llava(
    json_file: Path = typer.Argument(..., help="LLaVA JSON array or JSON-lines file."),
    image_dir: Path = typer.Argument(..., help="Folder the records' image and video paths are relative to."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write."),
    resize: int = typer.Option(256, "--resize", min=0, help="Shrink images to at most this side (0: keep size)."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Also read image paths that leave IMAGE_DIR (../x.jpg, /abs/x.jpg)."
    ),
) -> None:
    """Convert LLaVA-format conversations and images to the parquet schema; bad records are reported and skipped."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from mmv.data.llava import convert

    start = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description} {task.completed:,}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("records", total=None)
        report = convert(
            json_file,
            image_dir,
            out,
            resize=resize,
            on_record=lambda: bar.advance(task),
            allow_outside=allow_outside,
        )
    seconds = time.perf_counter() - start
    skipped = report.skipped
    console.print(f"{out}: {report.written:,} of {report.records:,} records written in {seconds:.1f} s")
    if skipped.total:
        console.print(f"[yellow]skipped {skipped.total}: {skipped.describe()}[/]")
        for example in skipped.examples:
            console.print(f"  {example}", markup=False)
    emit_json(
        {
            "out": str(out),
            "records": report.records,
            "written": report.written,
            "skipped": skipped.counts,
            "examples": skipped.examples,
            "seconds": round(seconds, 2),
        }
    )


@app.command("check")
@handle_errors
def check(
    files: list[Path] = typer.Argument(..., help="Parquet files to validate."),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="Tokenizer folder: also measure token lengths."),
    max_seq_len: int = typer.Option(768, "--max-seq-len", min=1, help="Length limit the rows are trained at."),
    tokens_per_image: int = typer.Option(
        64, "--tokens-per-image", min=1, help="Placeholder tokens per image of the model (its image_token_len)."
    ),
    tiles: int = typer.Option(
        1, "--tiles", metavar="N", help="Tiles per image of the model (its image_tiles; tiles of 256 pixels)."
    ),
    frames: int = typer.Option(8, "--frames", metavar="N", help="Frames a row's video is sampled to (as trained)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Check only the first N rows of each file."),
) -> None:
    """Validate every row as training reads it (JSON, turns, markers vs images, images, with --tokenizer the
    rendered template and lengths); exit 1 if any is bad."""
    from rich.markup import escape

    from mmv.data.check import check_file

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise MmvError(f"no such file: {', '.join(missing)}")
    tok = None
    if tokenizer is not None:
        from mmv.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer)
    reports = []
    with progress() as bar:
        for path in files:
            task = bar.add_task(path.name, total=None)
            advance = partial(bar.advance, task)
            reports.append(check_file(path, tok, max_seq_len, limit, advance, tokens_per_image, tiles, frames))
    console.print(check_table(reports, max_seq_len))
    for report in reports:
        for example in report.problems.examples:
            console.print(f"[red]{escape(example)}[/]", soft_wrap=True, highlight=False)
    if tok is None:
        console.print(
            "[yellow]no --tokenizer: the checks on the rendered chat template (placeholder runs, lengths against "
            "--max-seq-len) were skipped[/]"
        )
    bad = sum(r.problems.total for r in reports)
    console.print(f"[bold red]{bad} problem(s) found[/]" if bad else "[bold green]all rows are usable[/]")
    emit_json({"files": [r.summary() for r in reports], "bad": bad, "ok": bad == 0})
    if bad:
        raise SystemExit(1)  # not typer.Exit: it is a RuntimeError, which handle_errors would report


def check_table(reports: list, max_seq_len: int):
    from rich.table import Table

    from mmv.data.check import PROBLEMS

    table = Table(title="dataset check", title_justify="left")
    table.add_column("")
    for report in reports:
        table.add_column(report.path.name, justify="right")

    def add(label: str, values: list[str], bad: bool = False) -> None:
        table.add_row(label, *[f"[red]{v}[/]" if bad and v not in ("0", "-") else v for v in values])

    add("rows", [f"{r.rows:,}" for r in reports])
    add("checked", [f"{r.checked:,}" for r in reports])
    add("with images", [f"{r.with_images:,}" for r in reports])
    add("with a video", [f"{r.with_video:,}" for r in reports])
    add("  two or more", [f"{r.several_images:,}" for r in reports])
    add("text only", [f"{r.text_only:,}" for r in reports])
    add("multi-turn", [f"{r.multi_turn:,}" for r in reports])
    for kind in PROBLEMS:
        add(f"bad: {kind}", [str(r.problems.counts[kind]) for r in reports], bad=True)
    stats = [r.length_stats() for r in reports]
    add("tokens min/mean/p95/max", [f"{s['min']}/{s['mean']:.0f}/{s['p95']}/{s['max']}" if s else "-" for s in stats])
    add(f"truncated at {max_seq_len}", [str(r.truncated) if r.lengths else "-" for r in reports])
    return table


@app.command("preview")
@handle_errors(flags={"out": "--out"})
def preview(
    file: Path = typer.Argument(..., help="Parquet file."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    rows: int = typer.Option(12, "--rows", min=1, max=200, help="How many of the first rows to show."),
    columns: int = typer.Option(4, "--columns", min=1, max=16, help="Cells per line."),
) -> None:
    """A contact sheet: the first rows' images with their first question and answer."""
    from mmv.data.sheet import SheetLayout, contact_sheet

    if not file.is_file():
        raise MmvError(f"no such file: {file}")
    drawn = contact_sheet(file, out, rows, SheetLayout(columns=columns))
    console.print(f"{out}: {drawn} rows of {file.name}")
    emit_json({"out": str(out), "rows": drawn, "file": str(file)})


@app.command("rechunk")
@handle_errors(flags={"out": "--out"})
def rechunk(
    file: Path = typer.Argument(..., help="Parquet file in the published schema."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (appears only when complete)."),
    group_rows: int = typer.Option(1024, "--group-rows", min=16, help="Rows per row group of the copy."),
) -> None:
    """Copy a parquet file with small row groups, so training shuffles it across the whole file."""
    from mmv.data.parquet import open_parquet
    from mmv.data.rechunk import rechunk as rewrite

    if not file.is_file():
        raise MmvError(f"no such file: {file}")
    if out.exists():
        raise MmvError(f"{out} exists; choose a new --out (the source is never overwritten)")
    total = open_parquet(file).metadata.num_rows
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(file.name, total=total)
        rows = rewrite(file, out, group_rows, progress=lambda done: bar.update(task, completed=done))
    seconds = time.perf_counter() - start
    console.print(f"{out}: {rows:,} rows in row groups of {group_rows:,}, {seconds:.1f} s")
    emit_json(
        {"file": str(file), "out": str(out), "rows": rows, "group_rows": group_rows, "seconds": round(seconds, 2)}
    )


@app.command("cache-features")
@handle_errors(flags={"vision": "--vision DIR", "out": "--out"})
def cache_features(
    files: list[str] = typer.Argument(..., metavar="DATA...", help="Parquet files or globs, in training's order."),
    vision: Path = typer.Option(..., "--vision", metavar="DIR", help="The vision encoder folder training uses."),
    out: Path = typer.Option(
        None, "--out", metavar="FILE", help="Cache to write [default: beside the first file, named by its key]."
    ),
    cache_dtype: str = typer.Option("float16", "--cache-dtype", help="float16 | float32 (exact)."),
    device: str = typer.Option("auto", "--device", help="Where the encoder runs: auto | cpu | cuda | mps."),
    num_workers: int = typer.Option(0, "--num-workers", min=0, help="Processes decoding images beside this one."),
) -> None:
    """Encode every image of the data once with the frozen encoder: `mmv sft|pretrain --feature-cache FILE` (or
    --cache-features for the default place) then trains from it without decoding an image or running the encoder."""
    from mmv.data.feature_build import build_feature_cache
    from mmv.data.features import DTYPES

    if cache_dtype not in DTYPES:
        raise MmvError(f"unknown --cache-dtype {cache_dtype!r}; expected one of {', '.join(DTYPES)}")
    with progress() as bar:
        task = bar.add_task("encoding images", total=None)
        result = build_feature_cache(
            files,
            vision.expanduser().absolute(),
            out.expanduser().absolute() if out else None,
            dtype=cache_dtype,
            device=device,
            num_workers=num_workers,
            on_rows=lambda rows: bar.advance(task, rows),
        )
    what = "up to date, reused" if result.reused else f"written in {result.seconds:.1f} s"
    console.print(
        f"{result.path}: {result.images:,} images of {result.rows:,} rows, {result.bytes / 2**30:.2f} GiB, {what}"
    )
    if result.failures:
        console.print(f"[yellow]{result.failures} row(s) with images that cannot be decoded: training skips them[/]")
    emit_json(
        {
            "out": str(result.path),
            "rows": result.rows,
            "images": result.images,
            "image_failures": result.failures,
            "bytes": result.bytes,
            "dtype": cache_dtype,
            "reused": result.reused,
            "seconds": round(result.seconds, 2),
        }
    )
