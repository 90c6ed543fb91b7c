"""Converting the common LLaVA format to the published parquet schema, streaming.

A LLaVA file is a JSON array (or JSON lines) of records `{"image": "a.jpg" | ["a.jpg", ...], "conversations":
[{"from": "human" | "gpt" | "system", "value": "<image>\\n..."}]}`, or LLaVA-Video's `{"video": "clip.mp4", ...}`,
whose one `<image>` marker is the video. Records are decoded one at a time (a JSON array
is scanned incrementally, never loaded whole); images are read, optionally shrunk and re-encoded as JPEG. Each
converted conversation passes the checks training makes (`mmv.data.rows.check_conversation`); a record that fails
them, whose image is missing or corrupt, or whose image path leaves the image folder (`..`, an absolute path;
allowed with `allow_outside`), is counted and skipped.

A video is stored as it is, in the `video_bytes` column, once it has been decoded through to its last frame (a
truncated or unreadable file is skipped here, not found in training). Its frames are sampled when it is read for
training (`mmv.data.validate`), so how many frames the model sees stays a training setting (`--frames`) rather than
something fixed by the conversion, and a clip's every frame stays available to a later run that wants more.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmv.data.rows import BadRow, check_conversation, check_unicode
from mmv.data.skips import Skips
from mmv.data.writer import ParquetRows
from mmv.errors import MmvError
from mmv.fsio import refuse_input_as_output
from mmv.images import open_image

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
CHUNK = 1 << 20  # characters read at a time while scanning a JSON array
SEPARATORS = re.compile(r"[\s,]*")
EXAMPLES = 8  # skipped records named in the report
OUTSIDE = "outside image folder"


@dataclass
class Conversion:
    records: int = 0
    written: int = 0
    skipped: Skips = field(default_factory=lambda: Skips(keep=EXAMPLES))  # "record N (reason: ...)"


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
        except RecursionError:
            raise MmvError(f"{path} holds a record nested too deeply to read") from None
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
    except (ValueError, RecursionError):
        raise MmvError(f"{path} line {number} is not valid JSON (or nested too deeply to read)") from None


def image_paths(record: Any) -> list[Any]:
    """The record's image names (checked to be strings by `convert_record`)."""
    images = record.get("image") if isinstance(record, dict) else None
    if images is None:
        return []
    return list(images) if isinstance(images, list) else [images]


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


def image_path(image_dir: Path, name: str, allow_outside: bool, what: str = "image") -> Path:
    """`name` under `image_dir`; a name that leaves it (`..`, absolute) only with `allow_outside`. The test is on
    the name, not the resolved path, so symbolic links inside the folder are followed like any file."""
    inside = not os.path.isabs(name) and not os.path.normpath(name).startswith(os.pardir)
    if not inside and not allow_outside:
        raise SkipRecord(OUTSIDE, f"{what} {name} is outside {image_dir} (pass --allow-outside to read it)")
    return image_dir / name


def video_path(record: Any) -> Any:
    """The record's video name, if it has one (checked to be a string by `convert_video_record`)."""
    return record.get("video") if isinstance(record, dict) else None


def read_video(path: Path) -> bytes:
    from mmv.vision_input.video import check_video, pyav

    pyav()  # a missing PyAV stops the conversion; only a video itself can be a skipped record
    if not path.is_file():
        raise SkipRecord("missing video", f"video {path} does not exist")
    data = path.read_bytes()
    try:
        check_video(data, str(path))
    except MmvError as exc:
        raise SkipRecord("corrupt video", str(exc)) from None
    return data


def convert_video_record(
    record: Any, image_dir: Path, allow_outside: bool = False
) -> tuple[list[dict[str, str]], list[bytes], bytes]:
    name = video_path(record)
    try:
        if not isinstance(name, str):
            raise BadRow("schema", "video must be a path")
        if image_paths(record):
            raise BadRow("schema", "a record holds an image or a video, not both")
        check_unicode(name)
        messages, markers = check_conversation(messages_of(record), 1)
    except BadRow as exc:
        raise SkipRecord(exc.kind, str(exc)) from None
    if markers != 1:
        raise SkipRecord("markers", f"{markers} <image> marker(s) for one video; it needs one, where its frames go")
    return messages, [], read_video(image_path(image_dir, name, allow_outside, "video"))


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


def convert_record(
    record: Any, image_dir: Path, resize: int, allow_outside: bool = False
) -> tuple[list[dict[str, str]], list[bytes]]:
    paths = image_paths(record)
    try:
        if not all(isinstance(p, str) for p in paths):
            raise BadRow("schema", "image must be a path or a list of paths")
        check_unicode("\0".join(paths))
        messages, markers = check_conversation(messages_of(record), len(paths))
    except BadRow as exc:
        raise SkipRecord(exc.kind, str(exc)) from None
    if markers != len(paths):  # images without a marker: training would drop them unseen
        raise SkipRecord("markers", f"{markers} <image> marker(s) but {len(paths)} image(s)")
    files = [image_path(image_dir, p, allow_outside) for p in paths]
    return messages, [encode_image(path, resize) for path in files]


def convert(
    json_path: str | Path,
    image_dir: str | Path,
    out: str | Path,
    resize: int = 256,
    on_record: Callable[[], None] | None = None,
    allow_outside: bool = False,
) -> Conversion:
    """Write `out` from a LLaVA JSON/JSONL file; the parquet appears only when complete."""
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not json_path.is_file():
        raise MmvError(f"LLaVA file {json_path} does not exist")
    if not image_dir.is_dir():
        raise MmvError(f"image folder {image_dir} does not exist")
    refuse_input_as_output(out, [json_path])
    # a first pass over the text alone decides the column layout: a list of images only if some record needs it
    multi = any(len(image_paths(r)) > 1 for r in iter_records(json_path))
    videos = any(video_path(r) is not None for r in iter_records(json_path))
    report = Conversion()
    with ParquetRows(out, multi_image=multi, video=videos) as rows:
        for index, record in enumerate(iter_records(json_path)):
            report.records += 1
            try:
                if video_path(record) is not None:
                    messages, images, video = convert_video_record(record, image_dir, allow_outside)
                else:
                    (messages, images), video = convert_record(record, image_dir, resize, allow_outside), None
            except SkipRecord as exc:
                report.skipped.add(exc.reason, f"record {index}", str(exc))
            else:
                rows.add(messages, images, video)
                report.written += 1
            if on_record is not None:
                on_record()
        if report.written == 0:
            reasons = report.skipped.describe() or "the file holds no records"
            raise MmvError(f"no record of {json_path} could be converted ({reasons}); nothing written")
    return report
