"""Rewriting a parquet file with small row groups, so the loader can shuffle it well.

The loader shuffles row groups and then rows inside windows of about 2048 rows (see `source`). A file written as
one or two huge row groups (pyarrow's default is about a million rows) is therefore read almost in file order; the
same rows in row groups of ~1000 shuffle across the whole file. The copy streams (bounded memory) and is atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmv.data.parquet import first_line, open_dataset
from mmv.errors import MmvError
from mmv.fsio import atomic_path, refuse_input_as_output

GROUP_ROWS = 1024  # rows per row group of the copy: ~20 MB of 256x256 JPEGs


def rechunk(
    source: str | Path, target: str | Path, group_rows: int = GROUP_ROWS, progress: Callable[[int], None] | None = None
) -> int:
    """Copy `source` to `target` with row groups of `group_rows` rows; returns the rows copied.

    `progress(rows)` is called after each row group. The target appears only when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, target = Path(source), Path(target)
    refuse_input_as_output(target, [source])
    parquet = open_dataset(source)
    if not target.parent.is_dir():
        why = "is not a folder" if target.parent.exists() else "does not exist"
        raise MmvError(f"cannot rewrite {source} into {target}: {target.parent} {why}")
    copied = 0
    try:
        with atomic_path(target) as temporary, pq.ParquetWriter(str(temporary), parquet.schema_arrow) as writer:
            for batch in parquet.iter_batches(batch_size=group_rows, use_threads=False):
                writer.write_table(pa.Table.from_batches([batch]), row_group_size=group_rows)
                copied += batch.num_rows
                if progress is not None:
                    progress(copied)
    except (OSError, pa.ArrowException) as exc:
        raise MmvError(f"cannot rewrite {source} into {target}: {first_line(exc)}") from None
    return copied
