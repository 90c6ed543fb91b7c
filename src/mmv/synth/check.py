"""Validating a parquet dataset row by row: schema, JSON, roles, marker counts, image decoding, token lengths.

Every row is judged the way training would judge it (`mmv.data.rows.parse_row`, `mmv.images.open_image`, the chat
template and tokenizer), and streamed a batch of rows at a time so a multi-million-row file needs little memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_TOKEN
from mmv.data.rows import REQUIRED_COLUMNS, BadRow, parse_row
from mmv.errors import MmvError
from mmv.images import open_image

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# file: unreadable or wrong columns; json / schema / markers / image: as mmv.data.rows.BadRow; too_long: an image run
# would not fit max_seq_len (training drops such rows).
PROBLEMS = ("file", "json", "schema", "markers", "image", "too_long")
ROLES = ("system", "user", "assistant", "tool")
EXAMPLES = 8  # problem rows named in the report, per file
READ_ROWS = 64  # rows decoded at a time


@dataclass
class FileCheck:
    path: Path
    rows: int = 0  # in the file
    checked: int = 0  # rows looked at (all, or the first --limit)
    with_images: int = 0
    several_images: int = 0
    text_only: int = 0
    multi_turn: int = 0
    truncated: int = 0  # longer than max_seq_len but still usable (text cut, as the reference does)
    problems: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))
    examples: list[str] = field(default_factory=list)
    lengths: array = field(default_factory=lambda: array("l"))  # tokens per usable row, with a tokenizer

    @property
    def bad(self) -> int:
        return sum(self.problems.values())

    def problem(self, kind: str, where: str, message: str) -> None:
        self.problems[kind] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {kind}: {message}")

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
            "bad": self.bad,
            "with_images": self.with_images,
            "several_images": self.several_images,
            "text_only": self.text_only,
            "multi_turn": self.multi_turn,
            "truncated": self.truncated,
            "problems": self.problems,
            "tokens": self.length_stats(),
            "examples": self.examples,
        }


class RowChecker:
    def __init__(self, tokenizer: PreTrainedTokenizerFast | None, max_seq_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) if tokenizer is not None else None

    def check(self, report: FileCheck, index: int, conversations: Any, image_bytes: Any) -> None:
        where = f"row {index}"
        try:
            messages, images = parse_row(conversations, image_bytes)
            roles = [m["role"] for m in messages]
            if any(role not in ROLES for role in roles):
                raise BadRow("schema", f"roles {roles}; expected {', '.join(ROLES)}")
            if "assistant" not in roles:
                raise BadRow("schema", "no assistant turn: nothing to learn from")
            for k, image in enumerate(images):
                try:
                    open_image(image, name=f"#{k + 1}")
                except MmvError as exc:
                    raise BadRow("image", str(exc)) from None
            self.check_length(report, messages, len(images))
        except BadRow as exc:
            report.problem(exc.kind, where, str(exc))
            return
        report.with_images += bool(images)
        report.several_images += len(images) > 1
        report.text_only += not images
        report.multi_turn += roles.count("user") > 1

    def check_length(self, report: FileCheck, messages: list[dict[str, Any]], num_images: int) -> None:
        if self.tokenizer is None:
            return
        from mmv.tokenizer import encode, render_chat

        ids = encode(self.tokenizer, render_chat(self.tokenizer, messages, add_generation_prompt=False))
        if len(ids) > self.max_seq_len:
            if num_images and self.image_id in ids[self.max_seq_len :]:
                raise BadRow("too_long", f"{len(ids)} tokens: an image run ends beyond max_seq_len {self.max_seq_len}")
            report.truncated += 1
        report.lengths.append(len(ids))


def check_file(
    path: str | Path,
    tokenizer: PreTrainedTokenizerFast | None = None,
    max_seq_len: int = 768,
    limit: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> FileCheck:
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = FileCheck(Path(path))
    try:
        parquet = pq.ParquetFile(str(path))
    except (OSError, pa.ArrowException) as exc:
        report.problem("file", str(path), f"not a readable parquet file ({str(exc).splitlines()[0]})")
        return report
    names = parquet.schema_arrow.names
    report.rows = parquet.metadata.num_rows
    if any(column not in names for column in REQUIRED_COLUMNS):
        report.problem("file", str(path), f"columns {', '.join(names)}; expected {', '.join(REQUIRED_COLUMNS)}")
        return report
    checker = RowChecker(tokenizer, max_seq_len)
    todo = report.rows if limit is None else min(limit, report.rows)
    try:
        for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=list(REQUIRED_COLUMNS)):
            columns = batch.to_pydict()
            for conversations, image_bytes in zip(columns["conversations"], columns["image_bytes"], strict=True):
                if report.checked == todo:
                    return report
                checker.check(report, report.checked, conversations, image_bytes)
                report.checked += 1
            if on_rows is not None:
                on_rows(batch.num_rows)
    except (OSError, pa.ArrowException) as exc:
        report.problem("file", f"after row {report.checked}", f"unreadable ({str(exc).splitlines()[0]})")
    return report
