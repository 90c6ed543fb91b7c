"""Parquet files as one global row space, read a block of rows at a time, in a seeded order per epoch.

Global row numbers run over the files in the order given (globs sorted), then row groups, then rows. The epoch order
(`EpochPlan`) is a deterministic function of (seed, epoch): the row groups of all files are shuffled, each is cut into
blocks of at most `block_rows` consecutive rows (kept in file order, so a large row group is read front to back in
one streaming pass), consecutive blocks form windows of about `window_rows` rows, and the rows inside each window are
shuffled. A reader holds at most a couple of windows, whatever the size of the files.
"""

from __future__ import annotations

import bisect
import glob
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmv.data.parquet import COLUMNS, VIDEO_COLUMN, open_dataset, open_parquet, row_columns, text_value
from mmv.errors import MmvError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

READ_ROWS = 256  # rows per record batch of a streaming read
COARSE_ROWS = 16384  # a row group this large spans many shuffle windows, so its rows stay close to file order


def resolve_files(patterns: list[str]) -> list[Path]:
    """Paths and glob patterns -> existing files, each pattern's matches sorted, duplicates dropped."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise MmvError(f"no file matches {pattern}")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise MmvError(f"data file {path} does not exist")
            if path not in files:
                files.append(path)
    if not files:
        raise MmvError("no data files given; expected one or more parquet files or glob patterns")
    return files


@dataclass(frozen=True)
class RowGroup:
    file: int
    index: int
    first_row: int  # global row number of its first row
    num_rows: int


@dataclass(frozen=True)
class Block:
    """Consecutive rows of one row group: the unit of reading."""

    group: RowGroup
    offset: int  # first row within the row group
    length: int


class ParquetSource:
    """The files' metadata: row groups and global row numbering; no row data is read here."""

    def __init__(self, patterns: list[str]) -> None:
        self.files = resolve_files(patterns)
        self.groups: list[RowGroup] = []
        self.file_starts: list[int] = []
        total = 0
        for file_index, path in enumerate(self.files):
            parquet = open_dataset(path)
            self.file_starts.append(total)
            metadata = parquet.metadata
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                if rows:
                    self.groups.append(RowGroup(file_index, group, total, rows))
                total += rows
        self.num_rows = total

    def coarse_files(self, limit: int = COARSE_ROWS) -> list[Path]:
        """Files with a row group of more than `limit` rows: they shuffle poorly (see `mmv.data.rechunk`)."""
        return sorted({self.files[g.file] for g in self.groups if g.num_rows > limit})

    def locate(self, row: int) -> str:
        """'row N of FILE' for a global row number (N counts from 0 within the file)."""
        file = bisect.bisect_right(self.file_starts, row) - 1
        return f"row {row - self.file_starts[file]} of {self.files[file].name}"


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([k % (1 << 63) for k in keys])


class EpochPlan:
    """The epoch's order: position (sample) -> global row."""

    def __init__(
        self, groups: list[RowGroup], seed: int, epoch: int, block_rows: int = 256, window_rows: int = 2048
    ) -> None:
        self.seed, self.epoch = seed, epoch
        order = _rng(seed, epoch).permutation(len(groups)) if groups else []
        self.blocks = [
            Block(groups[g], offset, min(block_rows, groups[g].num_rows - offset))
            for g in order
            for offset in range(0, groups[g].num_rows, block_rows)
        ]
        # windows: [first block, last block) ranges and their first positions
        self.window_blocks: list[tuple[int, int]] = []
        self.window_starts: list[int] = []
        position, first, size = 0, 0, 0
        for index, block in enumerate(self.blocks):
            size += block.length
            if size >= window_rows or index == len(self.blocks) - 1:
                self.window_blocks.append((first, index + 1))
                self.window_starts.append(position)
                position += size
                first, size = index + 1, 0
        self.num_rows = position
        self._order = lru_cache(maxsize=4)(self._window_order)

    def window_of(self, position: int) -> int:
        return bisect.bisect_right(self.window_starts, position) - 1

    def window_range(self, window: int) -> tuple[int, int]:
        end = self.window_starts[window + 1] if window + 1 < len(self.window_starts) else self.num_rows
        return self.window_starts[window], end

    def _window_order(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(shuffled indices into the window's rows as read, global row of each row as read)."""
        first, last = self.window_blocks[window]
        rows = np.concatenate(
            [
                np.arange(b.group.first_row + b.offset, b.group.first_row + b.offset + b.length)
                for b in self.blocks[first:last]
            ]
        )
        return _rng(self.seed, self.epoch, window).permutation(len(rows)), rows

    def row_at(self, position: int) -> tuple[int, int, int]:
        """(window, index of the row within the window's blocks as read, global row) for a position."""
        window = self.window_of(position)
        shuffled, rows = self._order(window)
        index = int(shuffled[position - self.window_starts[window]])
        return window, index, int(rows[index])


class WindowRows:
    """A window's blocks as read (files may differ in column types, so they are not concatenated)."""

    def __init__(self, tables: list[pa.Table], files: list[Path]) -> None:
        self.tables, self.files = tables, files  # each block's table and the file it was read from
        self.starts = list(itertools.accumulate((t.num_rows for t in tables[:-1]), initial=0))

    def row(self, index: int) -> tuple[Any, Any, Any]:
        """(conversations, image_bytes, video_bytes) of the index-th row, as Python values."""
        block = bisect.bisect_right(self.starts, index) - 1
        table, local = self.tables[block], index - self.starts[block]
        conversations = text_value(self.files[block], table.column(COLUMNS[0]), local)
        video = table.column(VIDEO_COLUMN)[local].as_py() if VIDEO_COLUMN in table.column_names else None
        return conversations, table.column(COLUMNS[1])[local].as_py(), video


class BlockReader:
    """Reads windows of blocks; consecutive blocks of one row group come from one streaming pass."""

    def __init__(self, source: ParquetSource) -> None:
        self.source = source
        self._files: dict[int, pq.ParquetFile] = {}
        self._stream: Any = None
        self._stream_key: tuple[int, int] | None = None
        self._stream_pos = 0
        self._pending: pa.Table | None = None

    def read_window(self, plan: EpochPlan, window: int) -> WindowRows:
        first, last = plan.window_blocks[window]
        blocks = plan.blocks[first:last]
        return WindowRows([self.read_block(b) for b in blocks], [self.source.files[b.group.file] for b in blocks])

    def read_block(self, block: Block) -> pa.Table:
        group = block.group
        key = (group.file, group.index)
        if self._stream_key != key or self._stream_pos > block.offset:
            self._open_stream(group)
        if self._stream_pos < block.offset:  # resuming inside a row group: read past rows without decoding them
            self._take(block.offset - self._stream_pos)
        return self._take(block.length)

    def _open_stream(self, group: RowGroup) -> None:
        if group.file not in self._files:
            self._files[group.file] = open_parquet(self.source.files[group.file])
        # decoding on this thread: buffers freed here are reused here, while buffers of pyarrow's pool threads
        # (freed by this thread) were seen to pile up, growing RSS with the file
        parquet = self._files[group.file]
        self._stream = parquet.iter_batches(
            batch_size=READ_ROWS, row_groups=[group.index], columns=row_columns(parquet.schema_arrow), use_threads=False
        )
        self._stream_key, self._stream_pos, self._pending = (group.file, group.index), 0, None

    def _take(self, count: int) -> pa.Table:
        import pyarrow as pa

        parts, have = [], 0
        try:
            while have < count:
                if self._pending is None or self._pending.num_rows == 0:
                    self._pending = pa.Table.from_batches([next(self._stream)])
                piece = self._pending.slice(0, count - have)
                self._pending = self._pending.slice(piece.num_rows)
                parts.append(piece)
                have += piece.num_rows
        except StopIteration:
            raise MmvError(
                f"{self.source.files[self._stream_key[0]]} ended early: it holds fewer rows than its metadata says"
            ) from None
        except (OSError, pa.ArrowException) as exc:
            raise MmvError(
                f"cannot read {self.source.files[self._stream_key[0]]}: {str(exc).splitlines()[0]}"
            ) from None
        self._stream_pos += count
        return pa.concat_tables(parts)
