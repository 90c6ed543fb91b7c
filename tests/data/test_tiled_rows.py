"""Tiled images in training rows: placeholder layout, labels, the views collated, packing and the length checks."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from mmv.data.labels import LabelBuilder
from mmv.data.loader import TrainData
from mmv.data.rows import BadRow
from mmv.data.validate import RowValidator
from mmv.model.loss import IGNORE_INDEX
from mmv.tokenizer import encode, load_tokenizer
from mmv.vision_input.tiles import Tiling
from tests.conftest import TOKENIZER_DIR, load_fixture_model
from tests.data.parquet_files import make_spec, write_parquet
from tests.data.test_labels import FIXTURE_LENGTH, fixture_rows, unpadded

RUN = 64


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def row(width: int, height: int, question: str = "What is it?") -> tuple[str, bytes]:
    conversations = [
        {"role": "user", "content": f"<image>\n{question}"},
        {"role": "assistant", "content": "A blue picture."},
    ]
    return json.dumps(conversations), png(width, height)


def test_one_tile_builds_the_reference_rows(tokenizer):
    from safetensors.torch import load_file

    from tests.data.parquet_files import LABELS_DIR

    golden = load_file(str(LABELS_DIR / "labels.safetensors"))
    validator = RowValidator(LabelBuilder(tokenizer, FIXTURE_LENGTH), tiling=Tiling(1))
    for index, (messages, images) in enumerate(fixture_rows("single") + fixture_rows("multi")):
        name = "single" if index < len(fixture_rows("single")) else "multi"
        position = index if name == "single" else index - len(fixture_rows("single"))
        valid = validator.validate(json.dumps(messages), images if len(images) != 1 else images[0])
        assert valid.grids is None
        assert (valid.sample.input_ids, valid.sample.labels) == unpadded(golden, f"{name}.keep_think.{position}")


def test_a_tiled_image_takes_a_global_run_then_one_run_per_tile_row_by_row(tokenizer):
    validator = RowValidator(LabelBuilder(tokenizer, 1024), tiling=Tiling(4))
    valid = validator.validate(*row(1024, 512))  # 2:1 -> one row of two tiles
    ids, labels = valid.sample.input_ids, valid.sample.labels
    image_id, newline = tokenizer.convert_tokens_to_ids("<|image_pad|>"), encode(tokenizer, "\n")
    start = ids.index(image_id)
    assert ids[start : start + RUN] == [image_id] * RUN
    assert ids[start + RUN : start + RUN + len(newline)] == newline
    tiles = start + RUN + len(newline)
    assert ids[tiles : tiles + 2 * RUN] == [image_id] * (2 * RUN)
    assert ids.count(image_id) == 3 * RUN
    assert all(labels[i] == IGNORE_INDEX for i, token in enumerate(ids) if token == image_id)
    assert [(g.rows, g.cols) for g in valid.grids] == [(1, 2)]


def test_the_loader_collates_every_view_and_the_model_fills_every_run(tmp_path):
    first, second = row(512, 512, "First?"), row(200, 150, "Second?")  # 2x2 tiles; within one tile
    path = write_parquet(
        tmp_path / "tiled.parquet",
        [{"conversations": c, "image_bytes": b} for c, b in (first, second)],
    )
    for pack in (False, True):
        spec = make_spec([path], max_seq_len=600, tiles=4, pack=pack, random_system_prompt=False)
        [batch] = list(TrainData(spec).batches(0, 0, 2))
        assert batch.pixel_inputs["pixel_values"].shape[0] == 5 + 1
        assert int((batch.input_ids == 12).sum()) == 6 * RUN
        model = load_fixture_model("p32")
        with torch.no_grad():
            out = model(batch.input_ids, pixel_inputs=batch.pixel_inputs, labels=batch.labels)
        assert torch.isfinite(out.loss)


def test_a_tiled_image_that_does_not_fit_is_too_long(tokenizer):
    validator = RowValidator(LabelBuilder(tokenizer, 200), tiling=Tiling(4))
    assert validator.validate(*row(100, 100)).sample is not None  # one run fits in 200
    with pytest.raises(BadRow) as caught:
        validator.validate(*row(512, 512))  # five runs do not
    assert caught.value.kind == "too_long"


def test_a_marker_count_that_differs_names_the_runs(tokenizer):
    conversations = json.dumps(
        [{"role": "user", "content": "No marker, but <|image_pad|> typed."}, {"role": "assistant", "content": "x"}]
    )
    validator = RowValidator(LabelBuilder(tokenizer, 1024), tiling=Tiling(4))
    with pytest.raises(BadRow) as caught:
        validator.validate(conversations, [png(512, 512)])
    assert caught.value.kind == "markers"


def test_data_check_measures_the_tiled_length(tmp_path, tokenizer):
    from mmv.data.check import check_file

    conversations, image = row(512, 512)
    path = write_parquet(tmp_path / "one.parquet", [{"conversations": conversations, "image_bytes": image}])
    plain, tiled = check_file(path, tokenizer, 1024), check_file(path, tokenizer, 1024, tiles=4)
    # four more runs and a newline before each of the two tile rows
    assert tiled.lengths[0] == plain.lengths[0] + 4 * RUN + 2 * len(encode(tokenizer, "\n"))
    short_plain, short_tiled = check_file(path, tokenizer, 200), check_file(path, tokenizer, 200, tiles=4)
    assert short_plain.problems.count(["too_long"]) == 0 and short_tiled.problems.count(["too_long"]) == 1
