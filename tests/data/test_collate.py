"""Padding and packing layouts, proven on the fixture model: a packed sample computes what it computes alone."""

from __future__ import annotations

import pytest
import torch

from mmv.data.collate import PAD_SEGMENT, PreparedSample, collate, pack_rows
from mmv.data.loader import TrainData
from mmv.model.loss import IGNORE_INDEX
from tests.conftest import load_fixture_model
from tests.data.parquet_files import image_row, make_spec, text_row, write_parquet


def test_pack_rows_first_fit_decreasing():
    assert pack_rows([5, 3, 8, 2], 10) == [[2, 3], [0, 1]]
    assert pack_rows([10, 10], 10) == [[0], [1]]
    layout = pack_rows([7, 1, 4, 6, 3, 2, 9], 12)
    assert sorted(i for row in layout for i in row) == list(range(7))
    assert all(sum([7, 1, 4, 6, 3, 2, 9][i] for i in row) <= 12 for row in layout)


def test_padded_and_packed_layouts():
    samples = [
        PreparedSample(10 + i, list(range(1, n + 1)), [IGNORE_INDEX, *range(2, n + 1)], [])
        for i, n in enumerate([4, 2, 3])
    ]
    padded = collate(samples, pack=False, max_seq_len=8, process=None, num_samples=3)
    assert padded.input_ids.tolist() == [[1, 2, 3, 4], [1, 2, 0, 0], [1, 2, 3, 0]]
    assert padded.labels[1].tolist() == [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]
    assert padded.segment_ids is None and padded.position_ids is None and padded.rows == [10, 11, 12]
    packed = collate(samples, pack=True, max_seq_len=6, process=None, num_samples=3)
    assert packed.rows == [10, 11, 12]  # 4 + 2 fill the first row, 3 goes alone
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 1, 2], [1, 2, 3, 0, 0, 0]]
    assert packed.segment_ids.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, PAD_SEGMENT, PAD_SEGMENT, PAD_SEGMENT]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    assert packed.labels.tolist() == [
        [IGNORE_INDEX, 2, 3, 4, IGNORE_INDEX, 2],
        [IGNORE_INDEX, 2, 3, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert packed.num_tokens == padded.num_tokens == 9


@pytest.fixture(scope="module")
def packing_file(tmp_path_factory):
    rows = [image_row(0), text_row(1), image_row(2, images=2), text_row(3), image_row(4), text_row(5)]
    return write_parquet(tmp_path_factory.mktemp("pack") / "pack.parquet", rows)


def test_packed_samples_compute_as_if_alone(packing_file):
    model = load_fixture_model("p32")
    spec = make_spec([packing_file], pack=True, max_seq_len=256)
    [packed] = list(TrainData(spec).batches(0, 0, 6))
    assert packed.input_ids.shape[0] < 6  # something was packed
    [alone] = list(TrainData(make_spec([packing_file], pack=False, max_seq_len=256)).batches(0, 0, 6))
    with torch.no_grad():
        packed_logits = model(
            packed.input_ids,
            pixel_inputs=packed.pixel_inputs,
            segment_ids=packed.segment_ids,
            position_ids=packed.position_ids,
        ).logits
        alone_logits = model(alone.input_ids, pixel_inputs=alone.pixel_inputs).logits
    index = 0
    for row, segments in enumerate(packed.segment_ids.tolist()):
        for segment in range(max(segments) + 1):
            columns = torch.tensor([c for c, s in enumerate(segments) if s == segment])
            slot = alone.rows.index(packed.rows[index])
            length = len(columns)
            assert torch.equal(packed.input_ids[row, columns], alone.input_ids[slot, :length])
            assert torch.equal(packed.labels[row, columns], alone.labels[slot, :length])
            torch.testing.assert_close(packed_logits[row, columns], alone_logits[slot, :length], atol=1e-4, rtol=0)
            index += 1
    assert index == len(packed.rows) == 6
    # the loss over packed rows equals the loss over padded rows: no label crosses a sample boundary
    with torch.no_grad():
        loss_packed = model(
            packed.input_ids,
            pixel_inputs=packed.pixel_inputs,
            segment_ids=packed.segment_ids,
            position_ids=packed.position_ids,
            labels=packed.labels,
        ).loss
        loss_alone = model(alone.input_ids, pixel_inputs=alone.pixel_inputs, labels=alone.labels).loss
    torch.testing.assert_close(loss_packed, loss_alone, atol=1e-5, rtol=0)
