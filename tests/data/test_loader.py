"""TrainData: order, sharding over ranks and workers, exact resume, bad rows, packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmv.data.loader import TrainData, chunk_slices
from mmv.data.source import BlockReader
from mmv.errors import MmvError
from tests.data.parquet_files import image_row, jpeg, make_spec, mixed_rows, text_row, with_invalid_utf8, write_parquet


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("data") / "mixed.parquet", mixed_rows(45), row_group_size=10)


def empty(batch) -> bool:
    return batch.input_ids.numel() == 0


def same(a, b) -> bool:
    if empty(a) or empty(b):
        return empty(a) and empty(b) and (a.num_samples, a.next_sample) == (b.num_samples, b.next_sample)
    pixels = (a.pixel_inputs is None and b.pixel_inputs is None) or all(
        torch.equal(a.pixel_inputs[k], b.pixel_inputs[k]) for k in a.pixel_inputs
    )
    return (
        torch.equal(a.input_ids, b.input_ids)
        and torch.equal(a.labels, b.labels)
        and pixels
        and (a.rows, a.num_samples, a.next_sample, a.num_images) == (b.rows, b.num_samples, b.next_sample, b.num_images)
    )


def test_order_is_deterministic_and_changes_per_epoch(data_file):
    data = TrainData(make_spec([data_file]))
    first = [row for b in data.batches(0, 0, 4) for row in b.rows]
    assert sorted(first) == list(range(45))
    assert first == [row for b in TrainData(make_spec([data_file])).batches(0, 0, 4) for row in b.rows]
    assert first != [row for b in data.batches(1, 0, 4) for row in b.rows]


def test_two_ranks_split_every_chunk_without_overlap(data_file):
    single = list(TrainData(make_spec([data_file])).batches(0, 0, 6))
    ranks = [list(TrainData(make_spec([data_file]), rank=r, world_size=2).batches(0, 0, 3)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == TrainData(make_spec([data_file]), 0, 2).num_batches(0, 3) == 8
    for step, whole in enumerate(single):
        parts = [ranks[0][step], ranks[1][step]]
        assert parts[0].rows + parts[1].rows == whole.rows  # rank 0 takes the chunk's first 3 positions
        assert parts[0].next_sample == parts[1].next_sample == whole.next_sample == min(6 * (step + 1), 45)
    assert [b.num_samples for b in ranks[1]][-1] == 0 and empty(ranks[1][-1])  # 45 = 7 * 6 + 3: rank 1 gets none
    assert sum(b.num_samples for r in ranks for b in r) == 45


def test_workers_give_the_same_batches_in_the_same_order(data_file):
    plain = list(TrainData(make_spec([data_file])).batches(1, 0, 4))
    workers = list(TrainData(make_spec([data_file], num_workers=2)).batches(1, 0, 4))
    assert len(plain) == len(workers) == 12
    assert all(same(a, b) for a, b in zip(plain, workers, strict=True))


def test_resume_gives_the_tail_of_a_full_pass(data_file, monkeypatch):
    data = TrainData(make_spec([data_file]), rank=1, world_size=2)
    full = list(data.batches(2, 0, 3))
    read: list[int] = []
    original = BlockReader.read_window
    monkeypatch.setattr(BlockReader, "read_window", lambda self, plan, w: read.append(w) or original(self, plan, w))
    resumed = list(TrainData(make_spec([data_file]), rank=1, world_size=2).batches(2, 24, 3))
    assert len(resumed) == len(full) - 4
    assert all(same(a, b) for a, b in zip(full[4:], resumed, strict=True))
    assert min(read) == 24 // 16  # windows of 16 rows: the one holding position 24 is the first read


def test_resume_at_any_position_continues_the_same_order(data_file):
    order = [row for b in TrainData(make_spec([data_file])).batches(0, 0, 5) for row in b.rows]
    tail = [row for b in TrainData(make_spec([data_file])).batches(0, 17, 5) for row in b.rows]
    assert tail == order[17:]


@pytest.fixture
def bad_file(tmp_path):
    rows = mixed_rows(60)
    rows[4]["image_bytes"] = b"\xff\xd8 truncated jpeg"
    rows[17]["conversations"] = "[{not json"
    rows[30]["conversations"] = json.dumps(
        [{"role": "user", "content": "<image><image> two?"}, {"role": "assistant", "content": "one"}]
    )
    return write_parquet(tmp_path / "bad.parquet", rows, row_group_size=16)


def test_bad_rows_are_skipped_and_counted(bad_file):
    data = TrainData(make_spec([bad_file], max_bad_fraction=0.05))
    batches = list(data.batches(0, 0, 4))
    used = [row for b in batches for row in b.rows]
    skipped = {s.row: s.kind for b in batches for s in b.skipped}
    assert skipped == {4: "image", 17: "json", 30: "markers"}
    assert sorted(used + list(skipped)) == list(range(60))
    assert sum(b.num_samples for b in batches) == 60
    assert data.stats() == {
        "rows": 60,
        "json": 1,
        "unicode": 0,
        "schema": 0,
        "markers": 1,
        "image": 1,
        "too_long": 0,
        "bad": 3,
    }
    named = sorted(data.skips.examples)
    assert named[0].startswith("row 17 of bad.parquet (json: conversations is not valid JSON")
    assert named[1].startswith("row 30 of bad.parquet (markers: 2 <image> marker(s) but 1 image(s)")
    assert named[2] == "row 4 of bad.parquet (image: image #1 is not an image file)"


@pytest.mark.parametrize("workers", [0, 2])
def test_too_many_bad_rows_stop_with_their_row_numbers(bad_file, workers):
    data = TrainData(make_spec([bad_file], num_workers=workers, max_bad_fraction=0.04))  # 3 of 60 is 5%
    with pytest.raises(MmvError) as caught:
        list(data.batches(0, 0, 4))
    message = str(caught.value)
    assert "more than 4.0% of the rows are bad (3 of 60" in message and "\n" not in message
    assert all(f"row {r} of bad.parquet" in message for r in (4, 17, 30))


def test_the_default_limit_is_one_percent(bad_file):
    with pytest.raises(MmvError, match=r"more than 1\.0% of the rows are bad"):
        list(TrainData(make_spec([bad_file])).batches(0, 0, 4))


def test_too_long_rows_are_dropped_not_cut_and_do_not_count_as_bad(tmp_path):
    rows = [image_row(0), text_row(1), image_row(2, images=2), text_row(3)]
    path = write_parquet(tmp_path / "long.parquet", rows)
    data = TrainData(make_spec([path], max_seq_len=100, max_bad_fraction=0.0))
    [batch] = list(data.batches(0, 0, 4))
    assert sorted(batch.rows) == [0, 1, 3]
    assert [(s.row, s.kind) for s in batch.skipped] == [(2, "too_long")]
    assert batch.num_images == 1 and data.stats()["too_long"] == 1 and data.stats()["bad"] == 0


def test_a_chunk_with_nothing_usable_is_an_empty_batch(tmp_path):
    path = write_parquet(tmp_path / "long.parquet", [image_row(i, images=2) for i in range(4)] + [text_row(4)])
    batches = list(TrainData(make_spec([path], max_seq_len=100, window_rows=1)).batches(0, 0, 2))
    assert [b.num_samples for b in batches] == [2, 2, 1]
    assert [b.next_sample for b in batches] == [2, 4, 5]
    assert sum(empty(b) for b in batches) == 2
    nothing = next(b for b in batches if empty(b))
    assert nothing.input_ids.shape == (0, 0) and nothing.rows == [] and len(nothing.skipped) == 2


def test_text_only_rows_carry_no_images(tmp_path):
    path = write_parquet(tmp_path / "text.parquet", [text_row(i) for i in range(3)])
    [batch] = list(TrainData(make_spec([path])).batches(0, 0, 3))
    assert batch.pixel_inputs is None and batch.num_images == 0
    assert not (batch.input_ids == 12).any()


def test_without_a_vision_folder_images_are_checked_but_not_processed(tmp_path):
    path = write_parquet(tmp_path / "img.parquet", [image_row(0), image_row(1, images=2)])
    [batch] = list(TrainData(make_spec([path], vision_dir=None)).batches(0, 0, 2))
    assert batch.pixel_inputs is None and batch.num_images == 3
    assert int((batch.input_ids == 12).sum()) == 3 * 64


def test_images_follow_the_placeholder_order(tmp_path):
    rows = [image_row(i, images=1 + i % 2) for i in range(6)]
    for i, row in enumerate(rows):  # every image of the file a distinct colour
        count = 1 + i % 2
        images = [jpeg((40 * i + 20 * k, 0, 0)) for k in range(count)]
        row["image_bytes"] = images[0] if count == 1 else images
    path = write_parquet(tmp_path / "img.parquet", rows)
    for pack in (False, True):
        [batch] = list(TrainData(make_spec([path], pack=pack, max_seq_len=400)).batches(0, 0, 6))
        reds = batch.pixel_inputs["pixel_values"][:, 0].mean(dim=(1, 2))
        expected = [40 * r + 20 * k for r in batch.rows for k in range(1 + r % 2)]
        measured = ((reds + 1) * 127.5).round().tolist()  # undo the processor's rescale and normalisation
        assert all(abs(m - e) <= 3 for m, e in zip(measured, expected, strict=True)), (pack, measured, expected)


def test_rank_rows_counts_this_ranks_positions(data_file):
    for world, batch in ((1, 4), (2, 3), (3, 7), (4, 20)):
        counts = [TrainData(make_spec([data_file]), rank, world).rank_rows(batch) for rank in range(world)]
        assert sum(counts) == 45
        assert counts == [sum(len(r) for r, _ in chunk_slices(0, 45, batch, rank, world)) for rank in range(world)]


def test_invalid_arguments(data_file):
    with pytest.raises(MmvError, match="rank 2 is outside"):
        TrainData(make_spec([data_file]), rank=2, world_size=2)
    with pytest.raises(MmvError, match="window_rows must be at least 1"):
        TrainData(make_spec([data_file], window_rows=0))
    with pytest.raises(MmvError, match="max_bad_fraction must be between 0 and 1"):
        TrainData(make_spec([data_file], max_bad_fraction=2))
    with pytest.raises(MmvError, match="batch size"):
        next(TrainData(make_spec([data_file])).batches(0, 0, 0))
    assert list(TrainData(make_spec([data_file])).batches(0, 45, 4)) == []


def test_resume_into_a_different_world_size(data_file):
    """Two ranks stop after 3 steps; one process resumes at their next_sample and sees exactly the rest."""
    order = [row for b in TrainData(make_spec([data_file])).batches(0, 0, 9) for row in b.rows]
    ranks = [list(TrainData(make_spec([data_file]), rank=r, world_size=2).batches(0, 0, 4))[:3] for r in range(2)]
    seen = [row for step in zip(*ranks, strict=True) for b in step for row in b.rows]
    position = ranks[0][-1].next_sample
    assert position == 24 and seen == order[:24]
    rest = [row for b in TrainData(make_spec([data_file])).batches(0, position, 5) for row in b.rows]
    assert rest == order[24:]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_that_vanishes_mid_run_is_one_line(tmp_path, workers):
    path = write_parquet(tmp_path / "gone.parquet", mixed_rows(10))
    data = TrainData(make_spec([path], num_workers=workers))
    path.unlink()
    with pytest.raises(MmvError) as caught:
        list(data.batches(0, 0, 4))
    assert "gone.parquet" in str(caught.value) and "\n" not in str(caught.value)


def test_batch_to_keeps_the_bookkeeping(data_file):
    batch = next(TrainData(make_spec([data_file])).batches(0, 0, 4))
    moved = batch.to("cpu", torch.float64)
    assert (moved.next_sample, moved.num_samples, moved.rows) == (4, 4, batch.rows)
    assert moved.pixel_inputs["pixel_values"].dtype == torch.float64 and moved.input_ids.dtype == torch.long


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
@pytest.mark.parametrize("workers", [0, 2])
def test_pinned_batches(data_file, workers):
    batch = next(TrainData(make_spec([data_file], pin_memory=True, num_workers=workers)).batches(0, 0, 4))
    assert batch.input_ids.is_pinned() and batch.pixel_inputs["pixel_values"].is_pinned()
    assert batch.to("cuda").input_ids.is_cuda


KILL_WORKERS = """
import os, signal, sys
from pathlib import Path
from mmv.data.loader import TrainData
from mmv.errors import MmvError
from tests.data.parquet_files import make_spec
batches = TrainData(make_spec([sys.argv[1]], num_workers=2)).batches(0, 0, 2)
next(batches)
children = [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]
assert children
try:
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    list(batches)
except MmvError as exc:
    print(exc)
except RuntimeError as exc:  # torch's own SIGCHLD check can win the race; the CLI prints it as one line too
    print("torch:", str(exc).splitlines()[0])
"""


@pytest.mark.slow
def test_a_killed_worker_is_one_line(data_file):
    # in a child process: torch's SIGCHLD handler may fire at any later moment, which must not be pytest's own code
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KILL_WORKERS, str(data_file)], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1, done.stdout
    assert "a data loader worker stopped unexpectedly" in done.stdout or "worker" in done.stdout


def test_conversations_that_are_not_utf8_are_skipped_as_unicode(tmp_path):
    """Fuzz finding (see tests/data/test_parquet.py): training read each row's string with pyarrow's as_py, which
    raised UnicodeDecodeError and ended the run."""
    rows = mixed_rows(20)
    bad = rows[7]["conversations"].encode().replace(b"user", b"us\xffr")
    path = with_invalid_utf8(tmp_path / "flipped.parquet", rows, {7: bad})
    data = TrainData(make_spec([path], max_bad_fraction=0.1))
    batches = list(data.batches(0, 0, 4))
    assert {s.row: s.kind for b in batches for s in b.skipped} == {7: "unicode"}
    assert sum(b.num_samples for b in batches) == 20 and data.stats()["unicode"] == 1
