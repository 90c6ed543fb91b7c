"""Parquet files in the published dataset schema, written with pyarrow (into tmp_path), and the test DataSpec."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.conftest import REFERENCE, TOKENIZER_DIR

VISION_DIR = REFERENCE / "p32" / "vision"
LABELS_DIR = REFERENCE / "labels"


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_row(index: int, images: int = 1) -> dict:
    """A row whose user turn names its index (so tests can tell rows apart) and carries `images` images."""
    markers = "<image>\n" * images
    conversations = [
        {"role": "user", "content": f"{markers}What is picture {index}?"},
        {"role": "assistant", "content": f"Picture {index} is a square."},
    ]
    data = [jpeg((index % 256, 40, 90)) for _ in range(images)]
    return {"conversations": json.dumps(conversations), "image_bytes": data[0] if images == 1 else data}


def text_row(index: int) -> dict:
    """Text-only, as the dataset stores it: a small black placeholder image and no <image> marker."""
    conversations = [{"role": "user", "content": f"Say {index}."}, {"role": "assistant", "content": f"{index}."}]
    return {"conversations": json.dumps(conversations), "image_bytes": jpeg((0, 0, 0), 8)}


def write_parquet(path: Path, rows: list[dict], row_group_size: int | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len({isinstance(r["image_bytes"], list) for r in rows}) > 1:  # one column type per file: all lists then
        rows = [
            {**r, "image_bytes": r["image_bytes"] if isinstance(r["image_bytes"], list) else [r["image_bytes"]]}
            for r in rows
        ]
    pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=row_group_size)
    return path


def mixed_rows(count: int) -> list[dict]:
    return [text_row(i) if i % 3 == 2 else image_row(i) for i in range(count)]


def make_spec(files: list[Path | str], **overrides):
    """DataSpec for some files, with the fixture tokenizer and the tiny p32 image processor; small blocks and windows
    so that a few dozen rows already span several of each."""
    from mmv.data.loader import DataSpec

    options = dict(
        files=[str(f) for f in files],
        tokenizer_dir=str(TOKENIZER_DIR),
        vision_dir=str(VISION_DIR),
        max_seq_len=256,
        block_rows=8,
        window_rows=16,
    )
    options.update(overrides)
    return DataSpec(**options)


def conversation(*turns: dict) -> str:
    return json.dumps(list(turns))


PLACEHOLDER = jpeg((0, 0, 0), 8)  # what the dataset stores on text-only rows
USER_IMAGE = {"role": "user", "content": "<image>\nWhat is it?"}
ANSWER = {"role": "assistant", "content": "A red square."}
LONG_TEXT = "word " * 33000  # past the 32,768 positions of every mmv model, at about one token per word

# One row for each way a row used to be judged differently by training, `mmv data check` and `mmv eval`:
# name -> (row, the kind every tool must give it, a part of the reason).
BAD_ROWS: dict[str, tuple[dict, str, str]] = {
    "marker in a system turn": (
        {
            "conversations": conversation({"role": "system", "content": "Look at <image>."}, USER_IMAGE, ANSWER),
            "image_bytes": [jpeg(), jpeg()],
        },
        "markers",
        "outside the content of a user, assistant or tool turn",
    ),
    "placeholder token in the text": (
        {
            "conversations": conversation({"role": "user", "content": "<image>\nIs <|image_pad|> a word?"}, ANSWER),
            "image_bytes": jpeg(),
        },
        "markers",
        "placeholder token <|image_pad|> itself",
    ),
    "lone surrogate": (
        {"conversations": conversation({"role": "user", "content": "Say \ud800."}, ANSWER), "image_bytes": PLACEHOLDER},
        "unicode",
        "lone surrogate '\\ud800'",
    ),
    "tool_calls not a list": (
        {
            "conversations": conversation({"role": "user", "content": "Time?"}, {**ANSWER, "tool_calls": 5}),
            "image_bytes": PLACEHOLDER,
        },
        "schema",
        "tool_calls of type int",
    ),
    "functions not a list": (
        {
            "conversations": conversation(
                {"role": "system", "content": "Use tools.", "functions": 5}, {"role": "user", "content": "Hi"}, ANSWER
            ),
            "image_bytes": PLACEHOLDER,
        },
        "schema",
        "functions of type int",
    ),
    "turn without content": (
        {
            "conversations": conversation({"role": "user", "content": "Hi"}, {"role": "assistant"}),
            "image_bytes": PLACEHOLDER,
        },
        "schema",
        "turn 2 (assistant) has no content",
    ),
    "deeply nested JSON": (
        {"conversations": "[" * 100_000 + "]" * 100_000, "image_bytes": PLACEHOLDER},
        "json",
        "nested deeper than",
    ),
    "longer than the model's positions": (
        {
            "conversations": conversation({"role": "user", "content": LONG_TEXT + "<image>\nAnd this?"}, ANSWER),
            "image_bytes": jpeg(),
        },
        "too_long",
        "image",
    ),
}


def with_invalid_utf8(path: Path, rows: list[dict], bad: dict[int, bytes]) -> Path:
    """`rows` with the conversations of the rows in `bad` replaced by those bytes, in a string column: pyarrow
    checks UTF-8 when it builds a string array, not when it writes or reads one, so a flipped byte on disk gets
    through to the reader (the fuzz test found it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([bad.get(i, r["conversations"].encode()) for i, r in enumerate(rows)], pa.binary())
    text = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    images = pa.array([r["image_bytes"] for r in rows], pa.binary())
    pq.write_table(pa.table({"conversations": text, "image_bytes": images}), str(path))
    return path
