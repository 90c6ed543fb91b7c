"""Dataset rows -> evaluation items: the conversation up to its last user turn and the reply that follows it.

Rows are streamed from the parquet files a batch at a time. A row that cannot be used (bad JSON, marker/image
mismatch, an image that does not decode, no assistant reply after the last user turn) is counted by reason and
skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.data.rows import REQUIRED_COLUMNS, BadRow, parse_row
from mmv.errors import MmvError
from mmv.images import open_image

if TYPE_CHECKING:
    from PIL import Image

READ_ROWS = 64


@dataclass
class EvalItem:
    file: str
    row: int  # within its file
    messages: list[dict[str, Any]]  # up to and including the last user turn
    reference: str  # the assistant's reply to it, think block removed
    images: list[Image.Image]  # every image the messages refer to, in order, decoded

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class Skips:
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, file: str, row: int, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(f"row {row} of {Path(file).name}: {message}")


def strip_think(text: str) -> str:
    """The answer part of a reply: whatever follows a closing `</think>`, trimmed."""
    return text.split("</think>")[-1].strip()


def to_item(file: str, row: int, conversations: Any, image_bytes: Any) -> EvalItem:
    messages, images = parse_row(conversations, image_bytes)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None or last_user + 1 >= len(messages) or messages[last_user + 1]["role"] != "assistant":
        raise BadRow("no_reference", "no assistant reply follows the last user turn")
    prompt = messages[: last_user + 1]
    markers = sum(m["content"].count("<image>") for m in prompt)
    try:
        decoded = [open_image(data, name=f"#{k + 1}") for k, data in enumerate(images[:markers])]
    except MmvError as exc:
        raise BadRow("image", str(exc)) from None
    return EvalItem(file, row, prompt, strip_think(messages[last_user + 1]["content"]), decoded)


def iter_items(files: list[str | Path], skips: Skips, limit: int | None = None) -> Iterator[EvalItem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    produced = 0
    for file in files:
        try:
            parquet = pq.ParquetFile(str(file))
        except (OSError, pa.ArrowException) as exc:
            raise MmvError(f"{file} is not a readable parquet file ({str(exc).splitlines()[0]})") from None
        if any(c not in parquet.schema_arrow.names for c in REQUIRED_COLUMNS):
            raise MmvError(
                f"{file} has columns {', '.join(parquet.schema_arrow.names)}; expected {', '.join(REQUIRED_COLUMNS)}"
            )
        row = 0
        for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=list(REQUIRED_COLUMNS)):
            columns = batch.to_pydict()
            for conversations, image_bytes in zip(columns["conversations"], columns["image_bytes"], strict=True):
                if limit is not None and produced >= limit:
                    return
                try:
                    yield to_item(str(file), row, conversations, image_bytes)
                    produced += 1
                except BadRow as exc:
                    skips.add(str(file), row, exc.kind, str(exc))
                row += 1
