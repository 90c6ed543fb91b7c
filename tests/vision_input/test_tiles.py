"""Tiling: the anyres grid choice, the views the encoder sees, and the placeholder layout of a tiled image."""

from __future__ import annotations

import pytest
from PIL import Image

from mmv.config import IMAGE_MARKER, IMAGE_TOKEN, VISION_PRESETS
from mmv.errors import MmvError
from mmv.tokenizer import expand_image_markers
from mmv.vision_input.tiles import SINGLE, TileGrid, Tiling, check_tiles, choose_grid, cut_tiles, tile_side


@pytest.mark.parametrize(
    ("size", "max_tiles", "grid"),
    [
        ((1024, 1024), 4, (2, 2)),  # square and large: the full 2x2 at native size
        ((1024, 256), 4, (1, 4)),  # a 4:1 strip: one row of four
        ((256, 768), 4, (3, 1)),  # tall 1:3: one column of three (a fourth would only add padding)
        ((768, 512), 6, (2, 3)),  # 3:2 with room for six: exactly 2 rows x 3 columns
        ((768, 512), 4, (2, 2)),  # 3:2 with four: 2x2 shows more pixels than 1x3 or 1x4
        ((1920, 1080), 9, (2, 4)),  # 16:9: 2x4 (ratio 2) shows more of it than 3x3 or 2x3 (ratio 1.5)
        ((100, 100), 4, (1, 1)),  # smaller than one tile: nothing gained by more
        ((4000, 3000), 1, (1, 1)),
    ],
)
def test_the_grid_shows_the_most_of_the_image_at_native_size(size, max_tiles, grid):
    chosen = choose_grid(*size, max_tiles, 256)
    assert (chosen.rows, chosen.cols) == grid
    assert chosen.tiles <= max_tiles


def test_ties_go_to_the_grid_that_pads_least():
    # 512x256 fits 1x2 exactly; 2x2 shows no more pixels and pads half its canvas
    assert choose_grid(512, 256, 4, 256) == TileGrid(1, 2)


def test_one_tile_is_the_global_view_alone():
    tiling = Tiling(1, 256)
    image = Image.new("RGB", (2000, 500), (10, 20, 30))
    assert tiling.grid(image.size) == SINGLE and SINGLE.runs == 1
    assert tiling.views(image) == [image]  # the very object: the processor sees exactly what it saw before


def test_a_tiled_image_is_its_global_view_then_its_tiles_row_by_row():
    image = Image.new("RGB", (512, 512), (255, 255, 255))
    image.paste((200, 0, 0), (256, 256, 512, 512))  # the bottom-right quarter is red
    views = Tiling(4, 256).views(image)
    assert len(views) == 5 and views[0] is image
    assert all(view.size == (256, 256) for view in views[1:])
    assert [view.getpixel((128, 128)) for view in views[1:]] == [(255, 255, 255)] * 3 + [(200, 0, 0)]


def test_tiles_keep_the_aspect_ratio_and_pad_the_rest():
    image = Image.new("RGB", (600, 300), (0, 200, 0))  # 2:1 into a 2x2 canvas: fitted to 512x256, centred
    tiles = cut_tiles(image, TileGrid(2, 2), 256)
    assert tiles[0].getpixel((10, 10)) == (0, 0, 0)  # padding above the picture
    assert tiles[0].getpixel((10, 250)) == (0, 200, 0)
    assert tiles[3].getpixel((10, 250)) == (0, 0, 0)  # padding below it


def test_the_layout_separates_the_global_view_and_each_row_by_a_newline():
    assert TileGrid(2, 2).layout("R") == "R\nRR\nRR"
    assert TileGrid(1, 3).layout("R") == "R\nRRR"
    assert SINGLE.layout("R") == "R"
    assert TileGrid(2, 3).runs == 7


def test_markers_expand_to_their_images_layouts_in_order():
    run = IMAGE_TOKEN * 2
    text = f"{IMAGE_MARKER} and {IMAGE_MARKER}?"
    assert expand_image_markers(text, 2) == f"{run} and {run}?"
    assert expand_image_markers(text, 2, [TileGrid(1, 2), SINGLE]) == f"{run}\n{run}{run} and {run}?"
    # an iterator spans the turns of a conversation: the second turn's marker takes the second grid
    grids = iter([SINGLE, TileGrid(2, 1)])
    assert expand_image_markers(IMAGE_MARKER, 2, grids) == run
    assert expand_image_markers(IMAGE_MARKER, 2, grids) == f"{run}\n{run}\n{run}"


def test_the_tile_side_is_the_encoders_native_one():
    assert [tile_side(v) for v in VISION_PRESETS.values()] == [256, 256, 256]


@pytest.mark.parametrize("bad", [0, 17, -1])
def test_a_tile_count_out_of_range_names_the_option(bad):
    with pytest.raises(MmvError, match="tiles must be between 1 and 16") as caught:
        check_tiles(bad)
    assert caught.value.options == ("tiles",)
