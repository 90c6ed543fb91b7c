"""Validating a parquet dataset row by row, with the verdict training would give each row.

Every row goes through `mmv.data.validate.RowValidator`, the code training uses: JSON, Unicode, turn schema,
`<image>` markers against images, and image decoding; with a tokenizer also the conversation as the chat template
renders it (one placeholder run per image, image runs within max_seq_len, an answer token left after the cut).
Training's random preprocessing is not applied (as with `--no-random-system-prompt --keep-empty-think`). Rows are
streamed a few at a time, so a multi-million-row file needs little memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.data.labels import LabelBuilder
from mmv.data.parquet import ROWS_PER_READ, iter_rows, open_dataset
from mmv.data.rows import KINDS, BadRow
from mmv.data.skips import Skips
from mmv.data.validate import RowValidator
from mmv.errors import MmvError
from mmv.vision_input.tiles import Tiling, check_tiles

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# file: unreadable or wrong columns; the others as mmv.data.rows.KINDS
PROBLEMS = ("file", *KINDS)
EXAMPLES = 8  # problem rows named in the report, per file


@dataclass
class FileCheck:
    path: Path
    rendered: bool  # whether the checks that need the tokenizer ran
    rows: int = 0  # in the file
    checked: int = 0  # rows looked at (all, or the first --limit)
    with_images: int = 0
    with_video: int = 0
    several_images: int = 0
    text_only: int = 0
    multi_turn: int = 0
    truncated: int = 0  # longer than max_seq_len but still usable (text cut, as the reference does)
    problems: Skips = field(default_factory=lambda: Skips.of(PROBLEMS, keep=EXAMPLES))
    lengths: array = field(default_factory=lambda: array("l"))  # tokens per usable row, with a tokenizer

    def length_stats(self) -> dict[str, float] | None:
        if not self.lengths:
            return None
        ordered = sorted(self.lengths)
        return {
            "min": ordered[0],
            "mean": round(sum(ordered) / len(ordered), 1),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "max": ordered[-1],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "rows": self.rows,
            "checked": self.checked,
            "bad": self.problems.total,
            "rendered": self.rendered,
            "with_images": self.with_images,
            "with_video": self.with_video,
            "several_images": self.several_images,
            "text_only": self.text_only,
            "multi_turn": self.multi_turn,
            "truncated": self.truncated,
            "problems": self.problems.counts,
            "tokens": self.length_stats(),
            "examples": self.problems.examples,
        }


def count_row(
    report: FileCheck, validator: RowValidator, max_seq_len: int, conversations: Any, images: Any, video: Any = None
) -> None:
    where = f"row {report.checked} of {report.path.name}"
    try:
        valid = validator.validate(conversations, images, video_bytes=video)
    except BadRow as exc:
        report.problems.add(exc.kind, where, str(exc))
        return
    report.with_video += video is not None
    report.with_images += bool(valid.images)
    report.several_images += len(valid.images) > 1
    report.text_only += not valid.images
    report.multi_turn += sum(turn["role"] == "user" for turn in valid.messages) > 1
    if valid.sample is not None:
        report.truncated += valid.sample.length > max_seq_len
        report.lengths.append(valid.sample.length)


def check_file(
    path: str | Path,
    tokenizer: PreTrainedTokenizerFast | None = None,
    max_seq_len: int = 768,
    limit: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    tokens_per_image: int = 64,
    tiles: int = 1,
    frames: int = 8,
) -> FileCheck:
    """Check the first `limit` rows (all by default); `on_rows(n)` reports progress every few rows.

    `tokens_per_image` is the placeholder run of one image in the model the rows are for (64 in the reference's
    variants; mmv.config.VisionConfig.tokens_per_image), `tiles` its tiles per image (image_tiles), cut at the
    reference encoders' 256 pixels, `frames` the frames a row's video is sampled to (so its length counts them)."""
    builder = LabelBuilder(tokenizer, max_seq_len, tokens_per_image) if tokenizer is not None else None
    validator = RowValidator(builder, tiling=Tiling(check_tiles(tiles)), frames=frames)
    report = FileCheck(Path(path), rendered=validator.renders)
    try:
        parquet = open_dataset(path)
        report.rows = parquet.metadata.num_rows
        todo = report.rows if limit is None else min(limit, report.rows)
        for conversations, images, video in iter_rows(path, parquet):
            if report.checked == todo:
                break
            count_row(report, validator, max_seq_len, conversations, images, video)
            report.checked += 1
            if on_rows is not None and report.checked % ROWS_PER_READ == 0:
                on_rows(ROWS_PER_READ)
    except MmvError as exc:
        where = f"{report.path.name} after row {report.checked}" if report.checked else report.path.name
        report.problems.add("file", where, str(exc))
    return report
