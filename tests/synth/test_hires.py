"""`mmv data synth --hires`: one small shape in an image twice the encoder's side, whole inside one tile of a 2x2
grid, centred on a patch of that tile."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.synth.captions import QUESTIONS
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.hires import ENCODER_SIDE, HIRES_SIZE, RADII, RADIUS, tiny_scene
from mmv.synth.scenes import CELL, Scene, draw
from mmv.vision_input.tiles import Tiling


def test_hires_files_ask_the_shape_of_a_tiny_shape_in_a_large_image(tmp_path):
    synthesize(tmp_path, SynthConfig(n=40, eval_n=12, seed=1, task="hires"), tokenizer=False)
    for split in ("pretrain", "sft", "eval"):
        for row in pq.read_table(tmp_path / f"{split}.parquet").to_pylist():
            data = row["image_bytes"][0] if isinstance(row["image_bytes"], list) else row["image_bytes"]
            assert Image.open(io.BytesIO(data)).size == (HIRES_SIZE, HIRES_SIZE)
            if split == "eval":
                messages = json.loads(row["conversations"])
                assert messages[0]["content"].removeprefix("<image>\n") in QUESTIONS["shape"]
                assert messages[1]["content"].startswith("The shape is a ")


def test_the_shape_lies_whole_inside_one_tile_centred_on_one_of_its_patches():
    import random

    side = ENCODER_SIDE
    for seed in range(50):
        scene = tiny_scene(random.Random(seed))
        (x, y) = scene.centres[0]
        assert x // side == (x - RADIUS) // side == (x + RADIUS) // side
        assert y // side == (y - RADIUS) // side == (y + RADIUS) // side
        assert x % CELL == y % CELL == CELL // 2 and 2 * RADIUS < CELL
    assert HIRES_SIZE == 2 * side and Tiling(4, side).grid((HIRES_SIZE, HIRES_SIZE)).tiles == 4  # 2x2 at full size


def test_the_three_shapes_cover_about_the_same_area():
    """A squeeze keeps a shape's amount of colour: at one radius a triangle covers 60% of a circle's area, which the
    global view alone would show."""
    import numpy as np

    areas = {}
    for shape, radius in RADII.items():
        image = np.asarray(draw(Scene(shape, "red", "tiny", ((48, 48),), radius, (255, 255, 255)), 96))
        areas[shape] = int((image[..., 1] < 128).sum())
    assert max(areas.values()) < 1.12 * min(areas.values()), areas


def test_an_unknown_task_is_refused():
    with pytest.raises(MmvError, match="unknown synthetic task"):
        SynthConfig(task="nope")
