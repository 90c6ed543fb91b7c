# Stitched into exported transformers folders: see mmv/convert/remote_code.py for the rules this file follows.
"""High-resolution tiling: an image cut into encoder-sized tiles plus one squeezed global view (LLaVA-NeXT's anyres).

With at most N tiles, the grid (rows x cols, rows * cols <= N) is the one that shows the most of the image's pixels
at the encoder's native side once the image is fitted into it with its aspect ratio kept; among equals, the one
that wastes least padding. A grid of one tile adds nothing to the global view, so it is the global view alone:
`max_tiles=1` is exactly one run per image, as the reference does it.

Every view (the global one first, then the tiles row by row) goes through the encoder and projector like an image
and fills one placeholder run. The runs of a tiled image are laid out as: the global run, then each row of tile runs
back to back, with a newline (a token every tokenizer already has) before each row, so the model can tell the rows
apart without a new token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmv.errors import MmvError

if TYPE_CHECKING:
    from PIL import Image

    from mmv.config import VisionConfig

ROW_SEPARATOR = "\n"
MAX_TILES = 16  # beyond this a 64-token image outgrows the reference's 768-token training length many times over
PAD_COLOUR = (0, 0, 0)  # the border of a tile canvas whose aspect ratio differs from the image's


@dataclass(frozen=True)
class TileGrid:
    rows: int = 1
    cols: int = 1

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    @property
    def runs(self) -> int:
        """Placeholder runs the image takes: the global view, and the tiles when there is more than one."""
        return 1 if self.tiles == 1 else 1 + self.tiles

    def layout(self, run: str) -> str:
        """The placeholder text of one image, `run` being one view's run of placeholder tokens."""
        if self.tiles == 1:
            return run
        return ROW_SEPARATOR.join([run, *(run * self.cols for _ in range(self.rows))])


SINGLE = TileGrid()


def check_tiles(max_tiles: int, option: str = "tiles") -> int:
    if type(max_tiles) is not int or not 1 <= max_tiles <= MAX_TILES:
        raise MmvError(f"tiles must be between 1 and {MAX_TILES}, got {max_tiles!r}", option=option)
    return max_tiles


def tile_side(vision: VisionConfig) -> int:
    """The encoder's native image side: a fixed-size encoder's, or the square a NaFlex one fills with its patches."""
    if vision.image_size is not None:
        return vision.image_size
    assert vision.max_patches is not None  # VisionConfig checks it
    return math.isqrt(vision.max_patches) * vision.patch_size


def choose_grid(width: int, height: int, max_tiles: int, side: int) -> TileGrid:
    """The anyres grid of at most `max_tiles` tiles of `side` pixels for a `width` x `height` image."""
    best, best_key = SINGLE, (-1, 0)
    for rows in range(1, max_tiles + 1):
        for cols in range(1, max_tiles // rows + 1):
            canvas_w, canvas_h = cols * side, rows * side
            scale = min(canvas_w / width, canvas_h / height)
            shown = min(int(width * scale) * int(height * scale), width * height)
            key = (shown, -(canvas_w * canvas_h - shown))
            if key > best_key:
                best, best_key = TileGrid(rows, cols), key
    return best


@dataclass(frozen=True)
class Tiling:
    """How images are cut for one model: at most `max_tiles` tiles of the encoder's `side`."""

    max_tiles: int = 1
    side: int = 256

    @classmethod
    def of(cls, vision: VisionConfig, max_tiles: int) -> Tiling:
        return cls(check_tiles(max_tiles), tile_side(vision))

    def grid(self, size: tuple[int, int]) -> TileGrid:
        """The grid of an image of `size` (width, height)."""
        return SINGLE if self.max_tiles == 1 else choose_grid(size[0], size[1], self.max_tiles, self.side)

    def grids(self, images: list[Image.Image]) -> list[TileGrid]:
        return [self.grid(image.size) for image in images]

    def views(self, image: Image.Image) -> list[Image.Image]:
        """The images the encoder sees, in run order: the image itself (the processor squeezes it, as for any
        image), then the tiles row by row."""
        grid = self.grid(image.size)
        if grid.tiles == 1:
            return [image]
        return [image, *cut_tiles(image, grid, self.side)]

    def all_views(self, images: list[Image.Image]) -> list[Image.Image]:
        return [view for image in images for view in self.views(image)]


def cut_tiles(image: Image.Image, grid: TileGrid, side: int) -> list[Image.Image]:
    """The image fitted into the grid's canvas with its aspect ratio kept (centred, padded), cut into tiles."""
    from PIL import Image

    canvas_w, canvas_h = grid.cols * side, grid.rows * side
    scale = min(canvas_w / image.width, canvas_h / image.height)
    fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGB", (canvas_w, canvas_h), PAD_COLOUR)
    resized = image.convert("RGB").resize(fitted, Image.Resampling.BICUBIC)
    canvas.paste(resized, ((canvas_w - fitted[0]) // 2, (canvas_h - fitted[1]) // 2))
    return [
        canvas.crop((col * side, row * side, (col + 1) * side, (row + 1) * side))
        for row in range(grid.rows)
        for col in range(grid.cols)
    ]
