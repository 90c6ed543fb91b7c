"""Opening a dataset parquet file, checking its columns, and reading its rows in file order.

Every reader of the published schema goes through here: the training source (`mmv.data.source`, which streams
blocks in a shuffled order), `mmv data check`, `mmv data preview`, `mmv data rechunk` and `mmv eval`. A file that
cannot be opened, has the wrong columns or breaks while being read is one `MmvError` naming the file. A row is
(conversations, image_bytes, video_bytes): `video_bytes` is an optional column (binary or null) of mmv's own, and
a file without it reads None there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.errors import MmvError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

COLUMNS = ("conversations", "image_bytes")
VIDEO_COLUMN = "video_bytes"  # optional: one video per row, sampled into frames (mmv.data.validate)
EXPECTED = (
    "conversations (JSON string or list) and image_bytes (binary or list of binary), optional image_names and "
    "video_bytes (binary)"
)
# pyarrow's read buffer: streams a column chunk page by page instead of loading the whole row group.
READ_BUFFER = 1 << 20
ROWS_PER_READ = 64  # rows decoded to Python at a time by `iter_rows`


def open_parquet(path: str | Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(path), buffer_size=READ_BUFFER, pre_buffer=False)
        parquet.schema_arrow  # noqa: B018 - decoded lazily: a damaged footer fails here, not in a caller
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        # UnicodeDecodeError: a name in the footer (a column's) that is not UTF-8
        raise MmvError(f"{path} is not a readable parquet file ({first_line(exc)})") from None
    return parquet


def check_schema(path: str | Path, schema: pa.Schema) -> None:
    import pyarrow as pa

    names = schema.names
    if any(column not in names for column in COLUMNS):
        raise MmvError(f"{path} has columns {', '.join(names) or '(none)'}; expected {EXPECTED}")

    def is_binary(t: pa.DataType) -> bool:
        return pa.types.is_binary(t) or pa.types.is_large_binary(t)

    def is_list(t: pa.DataType) -> bool:
        return pa.types.is_list(t) or pa.types.is_large_list(t)

    conv = schema.field("conversations").type
    if not (pa.types.is_string(conv) or pa.types.is_large_string(conv) or is_binary(conv) or is_list(conv)):
        raise MmvError(f"{path}: column conversations is {conv}; expected {EXPECTED}")
    image = schema.field("image_bytes").type
    if not (is_binary(image) or pa.types.is_null(image) or (is_list(image) and is_binary(image.value_type))):
        raise MmvError(f"{path}: column image_bytes is {image}; expected {EXPECTED}")
    if VIDEO_COLUMN in names:
        video = schema.field(VIDEO_COLUMN).type
        if not (is_binary(video) or pa.types.is_null(video)):
            raise MmvError(f"{path}: column {VIDEO_COLUMN} is {video}; expected {EXPECTED}")


def row_columns(schema: pa.Schema) -> list[str]:
    """The columns a row is read from: the published two, and video_bytes where the file has it."""
    return [*COLUMNS, VIDEO_COLUMN] if VIDEO_COLUMN in schema.names else list(COLUMNS)


def open_dataset(path: str | Path) -> pq.ParquetFile:
    """A parquet file whose columns are those of the published schema."""
    parquet = open_parquet(path)
    check_schema(path, parquet.schema_arrow)
    return parquet


def iter_rows(path: str | Path, parquet: pq.ParquetFile | None = None) -> Iterator[tuple[Any, Any, Any]]:
    """(conversations, image_bytes, video_bytes) of every row in file order, as Python values, a few rows decoded
    at a time."""
    import pyarrow as pa

    parquet = parquet if parquet is not None else open_dataset(path)
    columns = row_columns(parquet.schema_arrow)
    batches = parquet.iter_batches(batch_size=ROWS_PER_READ, columns=columns, use_threads=False)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise MmvError(f"cannot read {path}: {first_line(exc)}") from None
        if batch is None:
            return
        conversations, images = (batch.column(name) for name in COLUMNS)
        videos = batch.column(VIDEO_COLUMN).to_pylist() if len(columns) > len(COLUMNS) else [None] * batch.num_rows
        yield from zip(column_values(path, conversations), images.to_pylist(), videos, strict=True)


def column_values(path: str | Path, column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The Python values of a text column. pyarrow checks UTF-8 when it builds a string array, not when it reads
    one from disk, so a damaged file can hold a string that is not UTF-8: that value comes as its bytes, which the
    row checks refuse as `unicode`, and the other rows read as usual."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return [text_value(path, column, index) for index in range(len(column))]


def text_value(path: str | Path, column: pa.Array | pa.ChunkedArray, index: int) -> Any:
    """One value of a text column (see `column_values`): a str, or the bytes of a string that is not UTF-8."""
    import pyarrow as pa

    try:
        return column[index].as_py()
    except UnicodeDecodeError as exc:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise MmvError(f"cannot read {path}: a text value is not UTF-8 ({exc.reason})") from None
        raw = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
        return column[index : index + 1].cast(raw)[0].as_py()


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
