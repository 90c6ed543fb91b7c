"""Writing rows in the published parquet schema (REFERENCE.md section 5), streaming and atomically.

`conversations` is a JSON string of {role, content}; `image_bytes` is plain binary when every row has at most one
image (like `sft_i2t.parquet`) and a list of binaries when some row has several. Text-only rows carry the small black
placeholder image, as the published files do. A file with videos (`video=True`) has mmv's `video_bytes` column too:
a video row holds its video there and no image. The file appears under its name only once it is complete.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmv.fsio import atomic_path

ROW_GROUP_SIZE = 256  # rows per row group: small enough that a streaming reader holds little memory


def placeholder_image() -> bytes:
    """The small black image the published dataset stores on text-only rows."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def schema(multi_image: bool, video: bool = False) -> pa.Schema:
    images = pa.list_(pa.binary()) if multi_image else pa.binary()
    columns = [("conversations", pa.string()), ("image_bytes", images)]
    return pa.schema([*columns, ("video_bytes", pa.binary())] if video else columns)


class ParquetRows:
    """`with ParquetRows(path, multi_image, video) as out: out.add(messages, images, video_bytes)`."""

    def __init__(
        self, path: str | Path, multi_image: bool = False, row_group_size: int = ROW_GROUP_SIZE, video: bool = False
    ) -> None:
        self.path = Path(path)
        self.multi_image = multi_image
        self.video = video
        self.row_group_size = row_group_size
        self.rows = 0
        self._pending = self._empty()
        self._placeholder = placeholder_image()

    def _empty(self) -> dict[str, list[Any]]:
        return {name: [] for name in schema(self.multi_image, self.video).names}

    def __enter__(self) -> ParquetRows:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(str(tmp), schema(self.multi_image, self.video))
        return self

    def add(self, messages: list[dict[str, Any]], images: list[bytes], video: bytes | None = None) -> None:
        """A row: its images, or (in a video file) its video and no images."""
        if len(images) > 1 and not self.multi_image:
            raise ValueError("a row with several images needs a multi-image file (multi_image=True)")
        if video is not None and (images or not self.video):
            raise ValueError("a video row holds no images and needs a video file (video=True)")
        self._pending["conversations"].append(json.dumps(messages, ensure_ascii=False))
        if video is None:
            images = images or [self._placeholder]
            self._pending["image_bytes"].append(images if self.multi_image else images[0])
        else:
            self._pending["image_bytes"].append(None)
        if self.video:
            self._pending["video_bytes"].append(video)
        self.rows += 1
        if len(self._pending["conversations"]) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending["conversations"]:
            self._writer.write_table(pa.table(self._pending, schema=schema(self.multi_image, self.video)))
            self._pending = self._empty()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._writer.close()
            # an exception inside the block propagates through the atomic context: the temporary file is removed
            self._atomic.__exit__(exc_type, exc, tb)
