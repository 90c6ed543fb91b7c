"""The feature cache file: written in one streaming pass, read back by (row, image), refused when damaged."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mmv.data.features import DATA_START, CacheKey, DataDigest, FeatureCache, FeatureWriter, mismatch
from mmv.data.rows import BadRow
from mmv.errors import MmvError

KEY = CacheKey((DataDigest("a.parquet", "0" * 64, 4),), "e" * 64)


def write(path, dtype="float16", rows=None):
    """Four rows: two images, a decoding failure, none, one image; features [n, 3, 5]."""
    generator = torch.Generator().manual_seed(0)
    rows = rows or [
        (torch.randn(2, 3, 5, generator=generator), None),
        (None, "image #1 is not an image file"),
        (None, None),
        (torch.randn(1, 3, 5, generator=generator), None),
    ]
    with FeatureWriter(path, KEY, dtype) as writer:
        for features, failure in rows:
            writer.add_row(features, failure)
    return rows


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_by_row_and_image(tmp_path, dtype):
    rows = write(tmp_path / "c.features", dtype)
    cache = FeatureCache(tmp_path / "c.features")
    assert (cache.rows, cache.images, cache.shape, cache.dtype.name) == (4, 3, (3, 5), dtype)
    assert cache.key == KEY and cache.failures == {1: "image #1 is not an image file"}
    assert [cache.count(r) for r in range(4)] == [2, 0, 0, 1]
    for row, index in [(3, 0), (0, 1), (0, 0)]:  # any order
        stored = cache.features(row, index)
        assert stored.dtype == getattr(torch, dtype) and stored.shape == (3, 5)
        assert torch.equal(stored, rows[row][0][index].to(stored.dtype))
    with pytest.raises(IndexError):
        cache.features(0, 2)


def test_the_file_is_as_small_as_its_records(tmp_path):
    write(tmp_path / "c.features")
    size = (tmp_path / "c.features").stat().st_size
    assert DATA_START + 3 * 3 * 5 * 2 + 8 * 5 < size < DATA_START + 3 * 3 * 5 * 2 + 8 * 5 + 1024


def test_images_of_stands_in_for_decoding(tmp_path):
    rows = write(tmp_path / "c.features", "float32")
    cache = FeatureCache(tmp_path / "c.features")
    images = cache.images_of([b"x", b"y"], 0)
    assert all(torch.equal(a, b) for a, b in zip(images, rows[0][0], strict=True))
    assert cache.images_of([], 2) == []
    with pytest.raises(BadRow) as caught:
        cache.images_of([b"z"], 1)
    assert caught.value.kind == "image" and str(caught.value) == "image #1 is not an image file"
    with pytest.raises(MmvError, match="holds 1 image"):
        cache.images_of([b"a", b"b"], 3)


def test_a_failed_build_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "c.features"
    write(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="shape"), FeatureWriter(path, KEY) as writer:
        writer.add_row(torch.zeros(1, 3, 5))
        writer.add_row(torch.zeros(1, 4, 5))  # another record shape
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.features"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:-3], "its end is damaged"),
        (lambda data: data[:100] + data[120:], "its size does not fit"),
        (lambda data: b"PK\x03\x04" + data[4:], "no MMVFEAT1 header"),
        (lambda data: data[:DATA_START], "no MMVFEAT1 header"),
        (lambda data: data.replace(b'"rows": 4', b'"rows": 9'), "out of range|does not fit"),
        (lambda data: data.replace(b'"format": 1', b'"format": 7'), "format 7"),
        (lambda data: data.replace(b'"dtype": "float16"', b'"dtype": "float64"'), "dtype 'float64'"),
    ],
)
def test_damaged_files_are_one_sentence(tmp_path, damage, message):
    path = tmp_path / "c.features"
    write(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MmvError, match=message) as caught:
        FeatureCache(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_damaged_row_index_is_refused(tmp_path):
    path = tmp_path / "c.features"
    write(path)
    data = bytearray(path.read_bytes())
    starts_at = DATA_START + 3 * 3 * 5 * 2
    data[starts_at + 8 : starts_at + 16] = np.array([7], dtype="<i8").tobytes()  # starts: 0 7 2 2 3
    path.write_bytes(bytes(data))
    with pytest.raises(MmvError, match="row index is damaged"):
        FeatureCache(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(MmvError, match="does not exist"):
        FeatureCache(tmp_path / "none.features")


def test_mismatch_names_what_differs(tmp_path):
    path = tmp_path / "c.features"
    other_data = CacheKey((DataDigest("a.parquet", "1" * 64, 4),), KEY.encoder)
    other_encoder = CacheKey(KEY.data, "f" * 64)
    two_files = CacheKey((*KEY.data, DataDigest("b.parquet", "2" * 64, 3)), KEY.encoder)
    assert mismatch(path, KEY, KEY, "enc") is None
    assert "other data than a.parquet" in mismatch(path, KEY, other_data, "enc")
    assert "another vision encoder than enc" in mismatch(path, KEY, other_encoder, "enc")
    assert "1 data file(s), not the 2 given (a.parquet, b.parquet)" in mismatch(path, KEY, two_files, "enc")


def test_writing_and_reading_hold_one_record_not_the_file(tmp_path):
    """Streaming: 32 MiB of features pass through the writer and are read back in any order while Python's heap
    (numpy's buffers included) never holds more than a few records: the writer keeps 8 bytes a row, the reader
    memory-maps the file."""
    import tracemalloc

    rows, record = 512, (64, 256)  # 64 KiB of float32 per record
    key = CacheKey((DataDigest("a.parquet", "0" * 64, rows),), "e" * 64)
    path = tmp_path / "big.features"
    tracemalloc.start()
    try:
        with FeatureWriter(path, key, "float32") as writer:
            for row in range(rows):
                writer.add_row(np.full((1, *record), row, dtype=np.float32))
        written = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        cache = FeatureCache(path)
        for row in (rows - 1, 0, rows // 2):
            assert float(cache.features(row, 0)[0, 0]) == row
        read = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.stat().st_size > rows * 64 * 256 * 4
    assert written < 1 << 20 and read < 1 << 20, (written, read)
