"""`mmv data synth --hires`: one shape in an image twice the encoder's side, whole inside one tile of a 2x2 grid,
over 2x2 merged tokens of that tile and inside one of the squeezed view."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.synth.captions import QUESTIONS
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.hires import CELL, ENCODER_PATCH, ENCODER_SIDE, HIRES_SIZE, JITTER, MERGE, RADII, RADIUS, tiny_scene
from mmv.synth.scenes import COLOURS, Scene, draw
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


def test_a_tile_spreads_the_shape_over_several_merged_tokens_where_the_squeezed_view_keeps_it_in_one():
    """Measured on the pixels: in its tile (at full size) the shape's colour reaches into 2x2 merged tokens of 32
    pixels, about 4x4 patches; squeezed to the encoder's side it stays inside a single merged token."""
    import random

    import numpy as np

    token = ENCODER_PATCH * MERGE
    tiling = Tiling(4, ENCODER_SIDE)
    assert HIRES_SIZE == 2 * ENCODER_SIDE and tiling.grid((HIRES_SIZE, HIRES_SIZE)).tiles == 4  # 2x2 at full size

    def token_span(view: Image.Image, colour: tuple[int, int, int]) -> tuple[set[int], set[int]]:
        pixels = np.asarray(view, dtype=np.int32)
        ys, xs = np.nonzero(np.abs(pixels - np.array(colour)).sum(-1) < 60)
        return set(xs // token), set(ys // token)

    for seed in range(30):
        scene = tiny_scene(random.Random(seed))
        image = draw(scene, HIRES_SIZE)
        colour = COLOURS[scene.colour]
        tiles = tiling.views(image)[1:]
        spans = [token_span(tile, colour) for tile in tiles]
        shown = [i for i, (xs, ys) in enumerate(spans) if xs]
        assert len(shown) == 1, (seed, shown)  # whole inside one tile
        assert all(len(axis) in (2, 3) for axis in spans[shown[0]]), (seed, spans[shown[0]])  # 3: jittered over a line
        squeezed = image.resize((ENCODER_SIDE, ENCODER_SIDE), Image.Resampling.BICUBIC)
        assert [len(axis) for axis in token_span(squeezed, colour)] == [1, 1], seed
        assert 2 * RADIUS <= 2 * token and all(abs(c % CELL - CELL // 2) <= JITTER for c in scene.centres[0])


def test_the_three_shapes_cover_about_the_same_area():
    """A squeeze keeps a shape's amount of colour: at one radius a triangle covers 60% of a circle's area, which the
    global view alone would show."""
    import numpy as np

    areas = {}
    for shape, radius in RADII.items():
        image = np.asarray(draw(Scene(shape, "red", "tiny", ((96, 96),), radius, (255, 255, 255)), 192))
        areas[shape] = int((image[..., 1] < 128).sum())
    assert max(areas.values()) < 1.12 * min(areas.values()), areas


def test_an_unknown_task_is_refused():
    with pytest.raises(MmvError, match="unknown synthetic task"):
        SynthConfig(task="nope")
