"""Procedural scenes: a few solid shapes of one kind and one colour on a plain background, drawn with PIL.

The task is built to be learnable in minutes by a tiny model whose encoder starts random: few colours and shapes,
properties (colour, shape, count, size, side) each well defined for the whole scene, and every shape centred on a
cell of the p32 encoder's 8x8 patch grid. A shape then always falls on the patches the same way, so even a linear
patch embedding tells a circle from a square; placed anywhere, it would need far more training than a demo has.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Saturated, well separated colours: a random patch encoder tells them apart after a few hundred steps.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
MAX_COUNT = 4
# Radii (pixels, at 256x256) of the two size classes. Either fits inside one 32-pixel patch: a shape is one token
# of the encoder, whole, so its outline is never split over patches whose centres all look alike.
SIZES: dict[str, tuple[int, ...]] = {"small": (12,), "large": (20,)}
BACKGROUNDS = ((255, 255, 255), (235, 235, 235), (250, 245, 230))
IMAGE_SIZE = 256
CELL = 32  # the p32 encoder's patch size: shapes are centred on the cells of this grid
CELLS = IMAGE_SIZE // CELL


@dataclass(frozen=True)
class Scene:
    shape: str  # one of SHAPES
    colour: str  # one of COLOURS
    size: str  # one of SIZES
    centres: tuple[tuple[int, int], ...]  # one (x, y) per shape
    radius: int
    background: tuple[int, int, int]

    @property
    def count(self) -> int:
        return len(self.centres)

    @property
    def side(self) -> str | None:
        """'left' or 'right' for a single shape (placed clearly on one side), else None."""
        if self.count != 1:
            return None
        return "left" if self.centres[0][0] < IMAGE_SIZE // 2 else "right"


def _place(rng: random.Random, count: int, radius: int, side: str | None) -> tuple[tuple[int, int], ...]:
    """Cell centres far enough apart not to overlap; a lone shape sits clearly left or right of the midline."""
    columns = range(CELLS)
    if side == "left":
        columns = range(CELLS // 2 - 1)
    elif side == "right":
        columns = range(CELLS // 2 + 1, CELLS)
    cells = [(c, r) for c in columns for r in range(CELLS)]
    while True:  # rejection sampling: four shapes of either size always fit quickly
        centres: list[tuple[int, int]] = []
        for column, row in rng.sample(cells, len(cells)):
            x, y = column * CELL + CELL // 2, row * CELL + CELL // 2
            if all(math.hypot(x - cx, y - cy) > 2 * radius + 8 for cx, cy in centres):
                centres.append((x, y))
                if len(centres) == count:
                    return tuple(centres)


def random_scene(rng: random.Random, count: int | None = None) -> Scene:
    count = count or rng.randint(1, MAX_COUNT)
    size = rng.choice(tuple(SIZES))
    radius = rng.choice(SIZES[size])
    side = rng.choice(("left", "right")) if count == 1 else None
    return Scene(
        shape=rng.choice(SHAPES),
        colour=rng.choice(tuple(COLOURS)),
        size=size,
        centres=_place(rng, count, radius, side),
        radius=radius,
        background=rng.choice(BACKGROUNDS),
    )


def draw(scene: Scene, side: int = IMAGE_SIZE) -> Image.Image:
    image = Image.new("RGB", (side, side), scene.background)
    paint(ImageDraw.Draw(image), scene)
    return image


def paint(canvas: ImageDraw.ImageDraw, scene: Scene) -> None:
    """The scene's shapes drawn onto `canvas`, over whatever it shows."""
    fill = COLOURS[scene.colour]
    r = scene.radius
    for x, y in scene.centres:
        if scene.shape == "circle":
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif scene.shape == "square":
            s = int(r * 0.85)  # about the circle's area, so size does not give the shape away
            canvas.rectangle((x - s, y - s, x + s, y + s), fill=fill)
        else:
            canvas.polygon([(x, y - r), (x - r, y + int(r * 0.8)), (x + r, y + int(r * 0.8))], fill=fill)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
