"""Rewriting a coarse parquet file into small row groups."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from mmv.data.rechunk import rechunk
from mmv.data.source import ParquetSource
from mmv.errors import MmvError
from tests.data.parquet_files import image_row, mixed_rows, write_parquet
from tests.faults import Crash, crash_at_rename, dead_pid


def test_rechunk_keeps_rows_and_schema_in_small_groups(tmp_path):
    rows = [*mixed_rows(40), {**image_row(40, images=2)}]
    source = write_parquet(tmp_path / "coarse.parquet", rows)
    assert ParquetSource([str(source)]).coarse_files(limit=30) == [source]
    seen: list[int] = []
    copied = rechunk(source, tmp_path / "fine.parquet", group_rows=8, progress=seen.append)
    assert copied == 41 and seen == [8, 16, 24, 32, 40, 41]
    fine = pq.ParquetFile(tmp_path / "fine.parquet")
    assert [fine.metadata.row_group(i).num_rows for i in range(fine.num_row_groups)] == [8, 8, 8, 8, 8, 1]
    assert fine.read().equals(pq.read_table(source))
    assert ParquetSource([str(tmp_path / "fine.parquet")]).coarse_files(limit=30) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rechunk_refuses_bad_input_and_leaves_no_partial_file(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(MmvError, match="not a readable parquet file"):
        rechunk(tmp_path / "junk.parquet", tmp_path / "out.parquet")
    source = write_parquet(tmp_path / "a.parquet", mixed_rows(3))
    with pytest.raises(MmvError, match=f"^the output {source} is the input {source}"):
        rechunk(source, source)
    with pytest.raises(MmvError, match="cannot rewrite"):
        rechunk(source, tmp_path / "missing-dir" / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "junk.parquet"]


def test_a_crash_at_the_rename_keeps_the_old_target_and_the_next_run_cleans_up(tmp_path, monkeypatch):
    source = write_parquet(tmp_path / "a.parquet", mixed_rows(5))
    target = tmp_path / "fine.parquet"
    target.write_bytes(b"the earlier copy")
    with pytest.raises(Crash), crash_at_rename(monkeypatch, 1):
        rechunk(source, target, group_rows=2)
    assert target.read_bytes() == b"the earlier copy"
    (tmp_path / f".fine.parquet.tmp-{dead_pid()}-abcd1234").write_bytes(b"half")  # what a kill -9 leaves
    assert rechunk(source, target, group_rows=2) == 5
    assert pq.read_table(target).equals(pq.read_table(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "fine.parquet"]
