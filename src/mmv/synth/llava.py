"""Converting the common LLaVA format to the published parquet schema, streaming.

A LLaVA file is a JSON array (or JSON lines) of records `{"image": "a.jpg" | ["a.jpg", ...], "conversations":
[{"from": "human" | "gpt" | "system", "value": "<image>\\n..."}]}`. Records are decoded one at a time (a JSON array
is scanned incrementally, never loaded whole); images are read, optionally shrunk and re-encoded as JPEG. A record
whose image is missing or corrupt, or whose markers do not match its images, is reported and skipped.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmv.errors import MmvError
from mmv.images import open_image
from mmv.synth.writer import ParquetRows

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
CHUNK = 1 << 20  # characters read at a time while scanning a JSON array
SEPARATORS = re.compile(r"[\s,]*")
EXAMPLES = 8  # skipped records remembered for the report


@dataclass
class Conversion:
    records: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    examples: list[str] = field(default_factory=list)  # "record N: reason" for the first few skips

    def skip(self, index: int, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"record {index}: {message}")


class SkipRecord(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def iter_records(path: Path) -> Iterator[Any]:
    """Records of a JSON array or a JSON-lines file, decoded one at a time."""
    with open(path, encoding="utf-8") as handle:
        if handle.read(CHUNK).lstrip()[:1] != "[":  # JSON lines
            handle.seek(0)
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield _loads(line, path, number)
            return
        handle.seek(0)
        yield from _array_items(handle, path)


def _array_items(handle: TextIO, path: Path) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    buffer, done = handle.read(CHUNK), False
    pos = SEPARATORS.match(buffer, buffer.index("[") + 1).end()
    while True:
        if buffer.startswith("]", pos):
            return
        try:
            record, pos = decoder.raw_decode(buffer, pos)
        except ValueError:
            if done:
                raise MmvError(f"{path} is not a valid JSON array of LLaVA records") from None
            more = handle.read(CHUNK)
            done = not more
            buffer, pos = buffer[pos:] + more, 0  # keep only the unread tail: memory stays about one chunk
            continue
        yield record
        pos = SEPARATORS.match(buffer, pos).end()
        if pos == len(buffer) and not done:
            buffer, pos = handle.read(CHUNK), 0
            done = not buffer
            pos = SEPARATORS.match(buffer, 0).end()


def _loads(line: str, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise MmvError(f"{path} line {number} is not valid JSON") from None


def image_paths(record: Any) -> list[str]:
    images = record.get("image") if isinstance(record, dict) else None
    if images is None:
        return []
    return [images] if isinstance(images, str) else list(images)


def messages_of(record: Any) -> list[dict[str, str]]:
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns:
        raise SkipRecord("schema", "no conversations list")
    messages = []
    for turn in turns:
        speaker = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        text = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        if speaker not in ROLES or not isinstance(text, str):
            raise SkipRecord("schema", f"a turn with speaker {speaker!r} and no text; expected from human/gpt")
        messages.append({"role": ROLES[speaker], "content": text})
    return messages


def encode_image(path: Path, resize: int) -> bytes:
    try:
        image = open_image(path)
    except MmvError as exc:
        raise SkipRecord("missing image" if not path.is_file() else "corrupt image", str(exc)) from None
    if resize and max(image.size) > resize:
        image.thumbnail((resize, resize))  # keeps the aspect ratio; the fixed-size encoders square it later
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def convert_record(record: Any, image_dir: Path, resize: int) -> tuple[list[dict[str, str]], list[bytes]]:
    messages = messages_of(record)
    paths = image_paths(record)
    markers = sum(m["content"].count("<image>") for m in messages)
    if markers != len(paths):
        raise SkipRecord("markers", f"{markers} <image> marker(s) but {len(paths)} image(s)")
    return messages, [encode_image(image_dir / p, resize) for p in paths]


def convert(
    json_path: str | Path,
    image_dir: str | Path,
    out: str | Path,
    resize: int = 256,
    on_record: Callable[[], None] | None = None,
) -> Conversion:
    """Write `out` from a LLaVA JSON/JSONL file; the parquet appears only when complete."""
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not json_path.is_file():
        raise MmvError(f"LLaVA file {json_path} does not exist")
    if not image_dir.is_dir():
        raise MmvError(f"image folder {image_dir} does not exist")
    # a first pass over the text alone decides the column layout: a list of images only if some record needs it
    multi = any(len(image_paths(r)) > 1 for r in iter_records(json_path))
    report = Conversion()
    with ParquetRows(out, multi_image=multi) as rows:
        for index, record in enumerate(iter_records(json_path)):
            report.records += 1
            try:
                messages, images = convert_record(record, image_dir, resize)
            except SkipRecord as exc:
                report.skip(index, exc.reason, str(exc))
            else:
                rows.add(messages, images)
                report.written += 1
            if on_record is not None:
                on_record()
        if report.written == 0:
            raise MmvError(f"no record of {json_path} could be converted ({_reasons(report)}); nothing written")
    return report


def _reasons(report: Conversion) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "the file holds no records"
