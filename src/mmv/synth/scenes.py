"""Procedural scenes: a few solid shapes of one kind and one colour on a plain background, drawn with PIL.

The task is built to be learnable by a tiny model from scratch: few colours and shapes, large shapes that do not
overlap, and properties (colour, shape, count, size, position) that are each well defined for the whole scene.
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
# Radius ranges (pixels, at 256x256) of the two size classes; far apart so "small" vs "large" is unambiguous.
SIZES: dict[str, tuple[int, int]] = {"small": (14, 20), "large": (30, 40)}
BACKGROUNDS = ((255, 255, 255), (235, 235, 235), (250, 245, 230))
IMAGE_SIZE = 256


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
    """Non-overlapping centres inside the frame; a lone shape keeps a clear gap from the vertical midline."""
    margin = radius + 4
    lo_x, hi_x = margin, IMAGE_SIZE - margin
    if side == "left":
        hi_x = IMAGE_SIZE // 2 - radius - 8
    elif side == "right":
        lo_x = IMAGE_SIZE // 2 + radius + 8
    while True:  # rejection sampling; at most 4 shapes of radius <= 40 always fit quickly
        centres: list[tuple[int, int]] = []
        for _ in range(200):
            x, y = rng.randint(lo_x, hi_x), rng.randint(margin, IMAGE_SIZE - margin)
            if all(math.hypot(x - cx, y - cy) > 2 * radius + 10 for cx, cy in centres):
                centres.append((x, y))
                if len(centres) == count:
                    return tuple(centres)


def random_scene(rng: random.Random, count: int | None = None) -> Scene:
    count = count or rng.randint(1, MAX_COUNT)
    size = rng.choice(tuple(SIZES))
    radius = rng.randint(*SIZES[size])
    side = rng.choice(("left", "right")) if count == 1 else None
    return Scene(shape=rng.choice(SHAPES), colour=rng.choice(tuple(COLOURS)), size=size,
                 centres=_place(rng, count, radius, side), radius=radius, background=rng.choice(BACKGROUNDS))


def draw(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), scene.background)
    canvas = ImageDraw.Draw(image)
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
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def placeholder_image() -> bytes:
    """The small black image the published dataset stores on text-only rows."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()
