"""`mmv data synth --video`: MP4 clips of shapes that move or appear, questions that need the order of the frames."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq

from mmv.data.check import check_file
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.scenes import COLOURS
from mmv.synth.video import (
    APPEARS_AT,
    CELL,
    CLIP_FRAMES,
    CLIP_SIZE,
    DIRECTIONS,
    last_clip,
    motion_clip,
    question_kind,
)
from mmv.tokenizer import load_tokenizer
from mmv.vision_input.video import sample_frames, uniform_picks


def centre_of(image, colour: str) -> tuple[float, float]:
    """The centre of the pixels close to `colour` in a decoded frame."""
    target = COLOURS[colour]
    points = [
        (x, y)
        for x in range(image.width)
        for y in range(image.height)
        if sum(abs(a - b) for a, b in zip(image.getpixel((x, y)), target, strict=True)) < 90
    ]
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def test_the_files_hold_clips_whose_frames_show_what_the_answer_says(tmp_path):
    result = synthesize(tmp_path, SynthConfig(n=12, eval_n=8, seed=3, task="video"), tokenizer=False)
    assert result.rows == {"pretrain": 12, "sft": 12, "eval": 8}
    kinds = []
    for row in pq.read_table(tmp_path / "eval.parquet").to_pylist():
        assert row["image_bytes"] is None
        messages = json.loads(row["conversations"])
        question, reply = messages[0]["content"], messages[1]["content"]
        assert question.startswith("<image>\n") and question.count("<image>") == 1
        frames = sample_frames(row["video_bytes"], CLIP_FRAMES)
        assert len(frames) == CLIP_FRAMES and frames[0].image.size == (CLIP_SIZE, CLIP_SIZE)
        assert [round(f.seconds, 2) for f in frames] == [k / 4 for k in range(CLIP_FRAMES)]
        kind = question_kind(question)
        kinds.append(kind)
        if kind == "motion":
            colour = question.split("the ")[1].split()[0]
            (x0, y0), (x1, y1) = centre_of(frames[0].image, colour), centre_of(frames[-1].image, colour)
            moved = {"left": x0 - x1, "right": x1 - x0, "up": y0 - y1, "down": y1 - y0}
            assert reply == f"It moves {max(moved, key=moved.get)}."
            assert abs(max(moved.values()) - 3 * CELL) < 2
    assert kinds == ["motion", "last"] * 4


def test_the_same_seed_gives_the_same_files(tmp_path):
    for folder in ("a", "b"):
        synthesize(tmp_path / folder, SynthConfig(n=6, eval_n=4, seed=7, task="video"), tokenizer=False)
    for split in ("pretrain", "sft", "eval"):
        first, second = (pq.read_table(tmp_path / f / f"{split}.parquet").to_pylist() for f in ("a", "b"))
        assert first == second


def test_a_moving_shape_starts_anywhere_its_travel_fits_and_goes_every_way():
    seen = set()
    for seed in range(200):
        scenes, direction = motion_clip(random.Random(seed))
        (x0, y0), (x1, y1) = scenes[0].centres[0], scenes[-1].centres[0]
        dx, dy = DIRECTIONS[direction]
        assert (x1 - x0, y1 - y0) == (3 * CELL * dx, 3 * CELL * dy)
        assert all(0 < c < CLIP_SIZE for s in scenes for c in s.centres[0])
        seen.add((direction, x0 // CELL if dx else y0 // CELL))
    # each way starts from each of the five cells the travel allows: the start alone does not tell the way
    assert len(seen) == 4 * 5


def test_two_shapes_are_there_from_the_start_the_third_appears_later_and_all_stay():
    frames, shapes = last_clip(random.Random(0))
    assert sorted(s.shape for s in shapes) == ["circle", "square", "triangle"]
    assert [len(visible) for visible in frames] == [2, 2, 2, 2, 3, 3, 3, 3]
    assert [len(visible) for visible in frames] == [sum(at <= k for at in APPEARS_AT) for k in range(CLIP_FRAMES)]
    assert frames[-1] == shapes


def test_two_frames_sampled_uniformly_show_the_move_and_the_arrival_and_so_do_four():
    """The demo samples 2 frames of a clip (the 3rd and the 7th); 4 (every other one) must show the same."""
    times = [k / 4 for k in range(CLIP_FRAMES)]
    assert uniform_picks(times, 2) == [2, 6] and uniform_picks(times, 4) == [1, 3, 5, 7]
    for seed in range(50):
        scenes, direction = motion_clip(random.Random(seed))
        dx, dy = DIRECTIONS[direction]
        (x0, y0), (x1, y1) = scenes[2].centres[0], scenes[6].centres[0]
        assert (x1 - x0, y1 - y0) == (2 * CELL * dx, 2 * CELL * dy)
        frames, shapes = last_clip(random.Random(seed))
        for first, last in ((2, 6), (1, 7), (3, 5)):
            assert shapes[-1] not in frames[first] and shapes[-1] in frames[last]
            assert frames[first] == shapes[:2]


def test_data_check_with_eight_frames_counts_eight_runs(tmp_path):
    from tests.conftest import TOKENIZER_DIR

    synthesize(tmp_path, SynthConfig(n=4, eval_n=4, seed=0, task="video"), tokenizer=False)
    report = check_file(tmp_path / "sft.parquet", load_tokenizer(TOKENIZER_DIR), 1024, frames=8)
    assert report.problems.total == 0 and report.with_video == 4
    assert all(8 * 64 < length < 8 * 64 + 150 for length in report.lengths)
