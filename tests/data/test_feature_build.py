"""Building a feature cache from real parquet files with the tiny fixture encoders, and training's loader reading it:
the same rows, tokens and skips as decoding the images, and the encoder's own features, without decoding a JPEG."""

from __future__ import annotations

import shutil

import pytest
import torch

from mmv.data.feature_build import build_feature_cache, cache_key, default_cache_path
from mmv.data.features import FeatureCache
from mmv.data.loader import TrainData
from mmv.data.source import resolve_files
from mmv.errors import MmvError
from mmv.model.vision import load_encoder
from tests.conftest import REFERENCE, one_thread
from tests.data.parquet_files import BAD_ROWS, image_row, make_spec, mixed_rows, text_row, write_parquet

P32 = REFERENCE / "p32" / "vision"


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def rows_with_problems(count: int = 30) -> list[dict]:
    """Image, text-only and two-image rows, one undecodable image and one row refused for its text."""
    rows = mixed_rows(count)
    rows[4] = {**rows[4], "image_bytes": [b"not an image"]}
    rows[7] = BAD_ROWS["lone surrogate"][0]
    rows[10] = image_row(10, images=2)
    return rows


@pytest.fixture
def data_file(tmp_path):
    return write_parquet(tmp_path / "data.parquet", rows_with_problems(), row_group_size=8)


def both_ways(data_file, cache, **spec):
    plain = list(TrainData(make_spec([data_file], max_bad_fraction=1, **spec)).batches(0, 0, 4))
    cached = TrainData(make_spec([data_file], max_bad_fraction=1, feature_cache=str(cache), **spec))
    return plain, list(cached.batches(0, 0, 4))


@pytest.mark.parametrize("variant", ["p32", "naflex-merge4"])
def test_cached_batches_match_decoded_ones(data_file, variant, monkeypatch):
    vision = REFERENCE / variant / "vision"
    result = build_feature_cache([data_file], vision, data_file.with_suffix(".features"), dtype="float32")
    assert (result.rows, result.images, result.failures, result.reused) == (30, 19, 1, False)
    plain = list(TrainData(make_spec([data_file], vision_dir=str(vision), max_bad_fraction=1)).batches(0, 0, 4))

    import mmv.images

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(mmv.images, "open_image", no_decoding)
    spec = make_spec([data_file], vision_dir=str(vision), max_bad_fraction=1, feature_cache=str(result.path))
    cached = list(TrainData(spec).batches(0, 0, 4))
    encoder = load_encoder(vision)
    assert len(plain) == len(cached) == 8
    for a, b in zip(plain, cached, strict=True):
        assert a.rows == b.rows and torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
        assert [(s.row, s.kind, s.reason) for s in a.skipped] == [(s.row, s.kind, s.reason) for s in b.skipped]
        assert (a.num_images, a.num_samples, a.next_sample) == (b.num_images, b.num_samples, b.next_sample)
        assert b.pixel_inputs is None
        if a.pixel_inputs is None:
            assert b.image_features is None
            continue
        with torch.no_grad():
            expected = encoder(**a.pixel_inputs).last_hidden_state
        assert torch.equal(b.image_features, expected)
    skipped = {s.row: s.kind for batch in cached for s in batch.skipped}
    assert skipped == {4: "image", 7: "unicode"}


def test_float16_features_are_the_encoder_output_rounded(data_file):
    result = build_feature_cache([data_file], P32, data_file.with_suffix(".features"))
    exact = build_feature_cache([data_file], P32, data_file.with_suffix(".f32"), dtype="float32")
    half, full = FeatureCache(result.path), FeatureCache(exact.path)
    assert half.dtype.name == "float16" and result.bytes < exact.bytes
    for row in range(half.rows):
        for k in range(half.count(row)):
            assert torch.equal(half.features(row, k), full.features(row, k).half())


@pytest.mark.slow
def test_worker_processes_write_the_same_file(data_file, tmp_path):
    one = build_feature_cache([data_file], P32, tmp_path / "one.features", chunk_rows=4)
    two = build_feature_cache([data_file], P32, tmp_path / "two.features", num_workers=2, chunk_rows=4)
    assert one.path.read_bytes() == two.path.read_bytes()


def test_several_files_and_globs_follow_the_loader_order(tmp_path):
    write_parquet(tmp_path / "b.parquet", [image_row(i) for i in range(5)])
    write_parquet(tmp_path / "a.parquet", [text_row(0), image_row(9, images=2)])
    result = build_feature_cache([str(tmp_path / "*.parquet")], P32)
    cache = FeatureCache(result.path)
    assert result.path == tmp_path / result.path.name and result.path.name.startswith("a.parquet.float16-")
    assert [d.name for d in cache.key.data] == ["a.parquet", "b.parquet"]
    assert [cache.count(r) for r in range(7)] == [0, 2, 1, 1, 1, 1, 1]


def test_an_existing_cache_is_reused_and_a_foreign_one_refused(data_file, tmp_path):
    first = build_feature_cache([data_file], P32)
    assert first.path == default_cache_path([data_file], cache_key([data_file], P32), "float16")
    written = first.path.stat().st_mtime_ns
    again = build_feature_cache([data_file], P32)
    assert again.reused and again.path == first.path and first.path.stat().st_mtime_ns == written
    with pytest.raises(MmvError, match="holds float16 features, not float32"):
        build_feature_cache([data_file], P32, first.path, dtype="float32")
    other = write_parquet(tmp_path / "other.parquet", mixed_rows(30))
    with pytest.raises(MmvError, match=r"built from other data than other\.parquet") as caught:
        build_feature_cache([other], P32, first.path)
    assert "\n" not in str(caught.value)


def test_the_loader_refuses_a_cache_of_other_data_or_another_encoder(data_file, tmp_path):
    cache = build_feature_cache([data_file], P32).path
    copy = tmp_path / "copy.parquet"
    shutil.copy(data_file, copy)
    TrainData(make_spec([copy], feature_cache=str(cache), max_bad_fraction=1))  # same contents, other name: fits
    changed = write_parquet(tmp_path / "changed.parquet", mixed_rows(30))
    with pytest.raises(MmvError, match=r"built from other data than changed\.parquet"):
        TrainData(make_spec([changed], feature_cache=str(cache)))
    encoder = tmp_path / "encoder"
    shutil.copytree(P32, encoder)
    config = (encoder / "preprocessor_config.json").read_text().replace("0.5", "0.4")
    (encoder / "preprocessor_config.json").write_text(config)
    with pytest.raises(MmvError, match="another vision encoder than") as caught:
        TrainData(make_spec([data_file], vision_dir=str(encoder), feature_cache=str(cache)))
    assert "\n" not in str(caught.value)


def test_the_cache_needs_the_encoder_folder(data_file):
    with pytest.raises(MmvError, match="needs the vision encoder folder"):
        TrainData(make_spec([data_file], vision_dir=None, feature_cache="x.features"))


def test_the_data_file_is_never_the_output(data_file):
    with pytest.raises(MmvError, match="is the input"):
        build_feature_cache([data_file], P32, data_file)
    assert resolve_files([str(data_file)])  # still there, still a parquet file
