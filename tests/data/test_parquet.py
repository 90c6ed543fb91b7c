"""The one parquet reader: opening, the column check and the sequential row iterator, and what its errors say."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmv.data.check import check_file
from mmv.data.parquet import ROWS_PER_READ, iter_rows, open_dataset
from mmv.errors import MmvError
from tests.data.parquet_files import mixed_rows, with_invalid_utf8, write_parquet


def corrupt_third_group(path):
    """Overwrite the start of the third row group's first column chunk: the footer stays readable."""
    offset = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset + 20 : offset + 200] = b"\xff" * 180
    path.write_bytes(bytes(data))
    return path


def test_rows_come_in_file_order_as_python_values(tmp_path):
    rows = mixed_rows(150)
    path = write_parquet(tmp_path / "a.parquet", rows, row_group_size=40)
    assert list(iter_rows(path)) == [(r["conversations"], r["image_bytes"], None) for r in rows]
    assert list(iter_rows(path, open_dataset(path)))[149][0] == rows[149]["conversations"]


def test_bad_files_are_one_error_naming_the_file(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(MmvError, match=f"{junk} is not a readable parquet file"):
        open_dataset(junk)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": ["hi"], "image_bytes": [b"x"]}), wrong)
    with pytest.raises(MmvError, match=f"{wrong} has columns text, image_bytes; expected conversations"):
        list(iter_rows(wrong))
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"conversations": [1], "image_bytes": [b"x"]}), numbers)
    with pytest.raises(MmvError, match="column conversations is int64"):
        open_dataset(numbers)


def test_a_column_name_that_is_not_utf8_is_one_error_naming_the_file(tmp_path):
    """Fuzz finding: a flipped byte in a column name in the footer made pyarrow raise UnicodeDecodeError while
    opening the file, which `mmv data check` reported only as the catch-all error."""
    path = write_parquet(tmp_path / "names.parquet", mixed_rows(3))
    data = path.read_bytes()
    assert data.count(b"image_bytes") >= 1
    path.write_bytes(data.replace(b"image_bytes", b"image_byt\xe5s"))  # same length: the footer still parses
    with pytest.raises(MmvError, match=f"{path} is not a readable parquet file"):
        open_dataset(path)
    report = check_file(path)
    assert report.problems.counts["file"] == 1 and "names.parquet" in report.problems.examples[0]


def test_a_file_broken_in_the_middle_stops_after_the_rows_read(tmp_path):
    rows = mixed_rows(3 * ROWS_PER_READ + 10)
    path = corrupt_third_group(write_parquet(tmp_path / "broken.parquet", rows, row_group_size=ROWS_PER_READ))
    read = []
    with pytest.raises(MmvError, match=f"cannot read {path}: ") as caught:
        read.extend(iter_rows(path))
    assert "\n" not in str(caught.value)
    assert read == [(r["conversations"], r["image_bytes"], None) for r in rows[: 2 * ROWS_PER_READ]]

    report = check_file(path)  # check counts the file as a problem and keeps what it saw
    assert report.checked == 2 * ROWS_PER_READ and report.problems.counts["file"] == 1
    assert report.problems.examples[0].startswith(f"broken.parquet after row {2 * ROWS_PER_READ} (file: cannot read")


def test_conversations_that_are_not_utf8_fail_their_row_not_the_file(tmp_path):
    """Fuzz finding: a flipped byte in a string column made pyarrow raise UnicodeDecodeError while converting the
    block, which ended `mmv data check` and `mmv eval` with an unhandled error instead of counting the row."""
    rows = mixed_rows(5)
    bad = rows[1]["conversations"].encode().replace(b"What", b"Wh\xe1t")
    path = with_invalid_utf8(tmp_path / "flipped.parquet", rows, {1: bad})
    values = list(iter_rows(path))
    assert [v[0] for v in values] == [r["conversations"] for r in rows[:1]] + [bad] + [
        r["conversations"] for r in rows[2:]
    ]
    report = check_file(path)
    assert report.checked == 5 and report.problems.counts["unicode"] == 1 and report.problems.total == 1
    at = bad.index(b"\xe1")
    assert report.problems.examples == [
        f"row 1 of flipped.parquet (unicode: conversations is not UTF-8 (invalid continuation byte at byte {at}))"
    ]


def test_a_video_column_that_is_not_binary_is_refused(tmp_path):
    path = tmp_path / "v.parquet"
    row = {"conversations": "[]", "image_bytes": b"", "video_bytes": "clip.mp4"}
    pq.write_table(pa.Table.from_pylist([row]), str(path))
    with pytest.raises(MmvError, match="column video_bytes is string"):
        open_dataset(path)
