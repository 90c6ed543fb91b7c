"""`mmv data synth --hires`: one tiny shape in a 512-pixel image, whole inside one tile of a 2x2 grid."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.synth.captions import QUESTIONS
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.hires import HIRES_SIZE, RADIUS, tiny_scene
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


def test_the_shape_lies_whole_inside_one_tile():
    import random

    for seed in range(50):
        scene = tiny_scene(random.Random(seed))
        (x, y) = scene.centres[0]
        assert x // 256 == (x - RADIUS) // 256 == (x + RADIUS) // 256
        assert y // 256 == (y - RADIUS) // 256 == (y + RADIUS) // 256
    assert Tiling(4).grid((HIRES_SIZE, HIRES_SIZE)).tiles == 4  # the 2x2 grid at native size


def test_an_unknown_task_is_refused():
    with pytest.raises(MmvError, match="unknown synthetic task"):
        SynthConfig(task="nope")
