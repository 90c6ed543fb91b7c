"""Parquet files, row numbering, the epoch order and the column checks."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmv.data.source import BlockReader, EpochPlan, ParquetSource
from mmv.errors import MmvError
from tests.data.parquet_files import mixed_rows, write_parquet


@pytest.fixture
def two_files(tmp_path):
    write_parquet(tmp_path / "a.parquet", mixed_rows(30), row_group_size=7)
    write_parquet(tmp_path / "b.parquet", mixed_rows(20), row_group_size=20)
    return tmp_path


def plan_rows(plan: EpochPlan) -> list[int]:
    return [plan.row_at(p)[2] for p in range(plan.num_rows)]


def test_rows_are_numbered_over_files_and_globs_sorted(two_files):
    source = ParquetSource([str(two_files / "*.parquet")])
    assert [f.name for f in source.files] == ["a.parquet", "b.parquet"]
    assert source.num_rows == 50
    assert [g.num_rows for g in source.groups] == [7, 7, 7, 7, 2, 20]
    assert source.locate(29) == "row 29 of a.parquet" and source.locate(30) == "row 0 of b.parquet"


def test_epoch_order_is_a_seeded_permutation(two_files):
    groups = ParquetSource([str(two_files / "*.parquet")]).groups
    first = plan_rows(EpochPlan(groups, seed=1, epoch=0, block_rows=4, window_rows=9))
    assert sorted(first) == list(range(50))
    assert first == plan_rows(EpochPlan(groups, seed=1, epoch=0, block_rows=4, window_rows=9))
    assert first != plan_rows(EpochPlan(groups, seed=1, epoch=1, block_rows=4, window_rows=9))
    assert first != plan_rows(EpochPlan(groups, seed=2, epoch=0, block_rows=4, window_rows=9))
    assert first != sorted(first)


def test_windows_hold_whole_blocks_and_are_shuffled_inside(two_files):
    groups = ParquetSource([str(two_files / "*.parquet")]).groups
    plan = EpochPlan(groups, seed=3, epoch=0, block_rows=4, window_rows=9)
    for window, (first, last) in enumerate(plan.window_blocks):
        begin, end = plan.window_range(window)
        rows = {plan.row_at(p)[2] for p in range(begin, end)}
        expected = {b.group.first_row + b.offset + k for b in plan.blocks[first:last] for k in range(b.length)}
        assert rows == expected
        assert end - begin >= 9 or window == len(plan.window_blocks) - 1


def test_reader_returns_the_rows_the_plan_names(two_files):
    source = ParquetSource([str(two_files / "*.parquet")])
    everything = [r["conversations"] for f in source.files for r in pq.read_table(f).to_pylist()]
    plan = EpochPlan(source.groups, seed=5, epoch=2, block_rows=3, window_rows=8)
    reader = BlockReader(source)
    for position in range(plan.num_rows):
        window, index, row = plan.row_at(position)
        assert reader.read_window(plan, window).row(index)[0] == everything[row]


def test_reading_a_block_mid_row_group_skips_ahead(two_files):
    source = ParquetSource([str(two_files / "b.parquet")])
    plan = EpochPlan(source.groups, seed=0, epoch=0, block_rows=6, window_rows=6)
    reader = BlockReader(source)
    last = reader.read_window(plan, len(plan.window_blocks) - 1)  # a fresh reader starts in the middle
    assert last.row(0)[0] == pq.read_table(two_files / "b.parquet").column(0)[18].as_py()


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        ({"text": ["x"], "image_bytes": [b"x"]}, "text, image_bytes"),
        ({"conversations": ["[]"], "image": [b"x"]}, "conversations, image"),
    ],
)
def test_missing_columns_name_the_expected_ones(tmp_path, columns, found):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(MmvError) as caught:
        ParquetSource([str(path)])
    message = str(caught.value)
    assert f"has columns {found}" in message
    assert "expected conversations" in message and "image_bytes" in message and "image_names" in message


def test_wrong_column_type_is_refused(tmp_path):
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"conversations": [json.dumps([])], "image_bytes": [3]}), path)
    with pytest.raises(MmvError, match="column image_bytes is int64; expected"):
        ParquetSource([str(path)])


def test_list_conversations_and_image_names_are_accepted(tmp_path):
    path = tmp_path / "lists.parquet"
    rows = [{"conversations": [{"role": "user", "content": "hi"}], "image_bytes": [b"1", b"2"], "image_names": "a"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert ParquetSource([str(path)]).num_rows == 1


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(MmvError, match="no file matches"):
        ParquetSource([str(tmp_path / "*.parquet")])
    with pytest.raises(MmvError, match="does not exist"):
        ParquetSource([str(tmp_path / "absent.parquet")])
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MmvError, match="not a readable parquet file"):
        ParquetSource([str(tmp_path / "junk.parquet")])


def test_columns_are_read_by_name_whatever_their_order(tmp_path):
    row = mixed_rows(1)[0]
    path = tmp_path / "reordered.parquet"
    pq.write_table(
        pa.table(
            {"image_names": ["x.jpg"], "image_bytes": [row["image_bytes"]], "conversations": [row["conversations"]]}
        ),
        path,
    )
    source = ParquetSource([str(path)])
    plan = EpochPlan(source.groups, seed=0, epoch=0)
    assert BlockReader(source).read_window(plan, 0).row(0) == (row["conversations"], row["image_bytes"], None)
