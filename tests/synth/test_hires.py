"""`mmv data synth --hires`: a framed square of one-pixel lines whose pattern a full-size tile shows and a squeeze to
the encoder's side erases."""

from __future__ import annotations

import collections
import io
import json
import random
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmv.errors import MmvError
from mmv.images import open_image
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.encoder import preprocessor_config
from mmv.synth.hires import (
    ENCODER_PATCH,
    ENCODER_SIDE,
    FRAME,
    HIRES_SIZE,
    PATTERNS,
    QUESTIONS,
    draw_square,
    image_bytes,
    striped_square,
)
from mmv.vision_input.tiles import Tiling

ANSWERS = {f"The square has {words}." for words in PATTERNS.values()}


def test_hires_files_ask_the_pattern_of_a_square_in_a_large_png(tmp_path):
    synthesize(tmp_path, SynthConfig(n=40, eval_n=12, seed=1, task="hires"), tokenizer=False)
    for split in ("pretrain", "sft", "eval"):
        for row in pq.read_table(tmp_path / f"{split}.parquet").to_pylist():
            data = row["image_bytes"][0] if isinstance(row["image_bytes"], list) else row["image_bytes"]
            image = Image.open(io.BytesIO(data))
            assert (image.format, image.size) == ("PNG", (HIRES_SIZE, HIRES_SIZE))  # lossless: the lines stay exact
            messages = json.loads(row["conversations"])
            if split == "eval":
                assert messages[0]["content"].removeprefix("<image>\n") in QUESTIONS
                assert messages[1]["content"] in ANSWERS
            elif split == "sft":
                assert any(m["content"] in ANSWERS for m in messages[1::2])


def test_the_three_patterns_are_asked_about_equally_often():
    counts = collections.Counter(striped_square(random.Random(seed)).pattern for seed in range(900))
    assert set(counts) == set(PATTERNS) and min(counts.values()) > 250, counts


def squeezed_and_tiles(processor, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's input for the global view and for the four tiles, as the loader makes them."""
    pixels = processor(images=Tiling(4, ENCODER_SIDE).views(image), return_tensors="np")["pixel_values"]
    return pixels[0], pixels[1:]


def test_the_squeezed_view_is_the_same_for_every_pattern_while_the_tiles_show_it(tmp_path):
    """Through the demo encoder's own processor: the global view of the three patterns differs by at most 3 of 255
    levels in any pixel (rounding at the lines' fade), while in the tile holding the square the patterns differ by
    most of the lines' contrast (215 levels). Measured, not assumed: an antialiased 2x squeeze averages each pair of
    lines to the same grey."""
    from transformers import AutoImageProcessor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(preprocessor_config("siglip", ENCODER_SIDE)))
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    level = 2 / 255  # one grey level after the processor's rescale to [-1, 1]
    for seed in range(12):
        square = striped_square(random.Random(seed))
        views = [squeezed_and_tiles(processor, open_image(image_bytes(replace(square, pattern=p)))) for p in PATTERNS]
        for (squeezed, tiles), (other_squeezed, other_tiles) in zip(views, views[1:] + views[:1], strict=True):
            assert np.abs(squeezed - other_squeezed).max() <= 3 * level + 1e-6, seed
            assert np.abs(tiles - other_tiles).max() > 150 * level, seed


def test_the_square_lies_whole_in_one_tile_over_whole_patches_and_its_patterns_are_half_light():
    """The square is whole in one tile, its lines span at least three whole patches of that tile each way wherever
    it lies, and the three patterns have the same amount of light and dark (to rounding in the fade)."""
    tiling = Tiling(4, ENCODER_SIDE)
    assert HIRES_SIZE == 2 * ENCODER_SIDE and tiling.grid((HIRES_SIZE, HIRES_SIZE)).tiles == 4  # 2x2 at full size
    for seed in range(20):
        square = striped_square(random.Random(seed))
        images = [draw_square(replace(square, pattern=p)) for p in PATTERNS]
        background = np.array(square.background)
        marked = [
            i
            for i, tile in enumerate(tiling.views(images[0])[1:])
            if (np.abs(np.asarray(tile, dtype=int) - background).sum(-1) > 0).any()
        ]
        assert len(marked) == 1, (seed, marked)
        assert square.side - 2 * FRAME >= 4 * ENCODER_PATCH
        sums = [np.asarray(image, dtype=int).sum((0, 1)) for image in images]
        assert all(np.abs(s - sums[0]).max() <= square.side * square.side // 8 for s in sums), (seed, sums)


def test_an_unknown_task_is_refused():
    with pytest.raises(MmvError, match="unknown synthetic task"):
        SynthConfig(task="nope")
