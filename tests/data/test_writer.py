"""Writing rows in the published schema: streaming, atomic, readable back by the one row parser."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmv.data.rows import parse_row
from mmv.data.writer import ParquetRows, placeholder_image


def test_rows_read_back_as_written_with_the_placeholder_on_text_rows(tmp_path):
    path = tmp_path / "out.parquet"
    image_turns = [{"role": "user", "content": "<image>\nColour?"}, {"role": "assistant", "content": "Red."}]
    text_turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    with ParquetRows(path, row_group_size=2) as out:
        for _ in range(3):
            out.add(image_turns, [b"jpeg"])
        out.add(text_turns, [])
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.field("image_bytes").type == pa.binary() and parquet.num_row_groups == 2
    rows = parquet.read().to_pylist()
    assert rows[3]["image_bytes"] == placeholder_image()
    assert [parse_row(r["conversations"], r["image_bytes"]) for r in rows] == [(image_turns, [b"jpeg"])] * 3 + [
        (text_turns, [])
    ]


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "out.parquet"
    with pytest.raises(ValueError), ParquetRows(path) as out:
        out.add([{"role": "user", "content": "hi"}], [])
        out.add([{"role": "user", "content": "<image><image>"}], [b"a", b"b"])  # two images in a single-image file
    assert list(tmp_path.iterdir()) == []
