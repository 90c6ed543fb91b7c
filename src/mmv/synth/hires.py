"""The high-resolution task (`mmv data synth --hires`): one shape somewhere in an image twice the encoder's side.

Made for the demo's 128-pixel encoder (`mmv demo --hires`: 16-pixel patches, 2x2 of them merged into each of a
view's 16 tokens). The image is 256x256 and the shape 48-60 pixels across, centred where four merged tokens meet on
a 64-pixel grid (up to JITTER pixels off), so with `--tiles 4` a 128-pixel tile shows it at full size over about
4x4 patches. Squeezed into one 128-pixel view it is 24-30 pixels across, inside a single merged token (2x2
patches). The demo learns the shape from the squeezed view (100% at `--tiles 1`) better than from the tiles (66%
at `--tiles 4`, where it is split over four merged tokens), so this layout does not yet need resolution
(BENCHMARKS.md). The held-out questions ask its shape (a third is chance).
"""

from __future__ import annotations

import random
from typing import Any

from mmv.synth import captions
from mmv.synth.scenes import BACKGROUNDS, COLOURS, SHAPES, Scene, draw, jpeg_bytes

HIRES_SIZE = 256
ENCODER_SIDE = 128  # the native side of the encoder the task is made for: a 2x2 grid of tiles shows it at full size
ENCODER_PATCH = 16  # its patch: 8x8 patches a view, a shape spans about 4x4 of them in a tile
MERGE = 2  # its projector stacks 2x2 patches into one token: 16 tokens a view, the squeezed shape inside one
CELL = 64  # shapes are centred on the cells of this grid, a corner of four merged tokens in a tile
# Each shape's radius, so that all three cover about the same area (1,680-1,880 pixels; at one radius a triangle
# has 60% of a circle's): a squeeze keeps a shape's amount of colour, so unequal areas would tell its shape through
# the global view alone. The scenes' one-patch radii (12, 15) at twice the size.
RADII = {"circle": 24, "square": 24, "triangle": 30}
RADIUS = max(RADII.values())
CELLS = HIRES_SIZE // CELL
# a shape's centre moves up to this many pixels off its cell's centre (the triangle still ends inside the cell): 25
# places a cell make 21,600 distinct images, so held-out questions are mostly about images no training row shows
JITTER = 2

Row = tuple[list[dict[str, Any]], list[bytes]]


def tiny_scene(rng: random.Random) -> Scene:
    column, row = rng.randrange(CELLS), rng.randrange(CELLS)
    shape = rng.choice(SHAPES)
    dx, dy = rng.randint(-JITTER, JITTER), rng.randint(-JITTER, JITTER)
    return Scene(
        shape=shape,
        colour=rng.choice(tuple(COLOURS)),
        size="tiny",
        centres=((column * CELL + CELL // 2 + dx, row * CELL + CELL // 2 + dy),),
        radius=RADII[shape],
        background=rng.choice(BACKGROUNDS),
    )


def image_bytes(scene: Scene) -> bytes:
    return jpeg_bytes(draw(scene, HIRES_SIZE), quality=95)  # a lossier JPEG blurs the outline the task is about


def _turns(scene: Scene, kinds: list[str], rng: random.Random) -> list[dict[str, str]]:
    messages = []
    for i, kind in enumerate(kinds):
        turn = captions.ask(scene, kind, rng)
        messages += [
            {"role": "user", "content": ("<image>\n" if i == 0 else "") + turn.question},
            {"role": "assistant", "content": turn.answer},
        ]
    return messages


def hires_row(split: str, rng: random.Random) -> Row:
    """pretrain: a caption; sft: the shape, and half the time its colour too, in either order; eval: the shape."""
    scene = tiny_scene(rng)
    if split == "pretrain":
        prompt = rng.choice(captions.CAPTION_PROMPTS)
        messages = [
            {"role": "user", "content": f"<image>\n{prompt}"},
            {"role": "assistant", "content": captions.caption(scene)},
        ]
    elif split == "sft":
        kinds = ["shape", "colour"] if rng.random() < 0.5 else ["shape"]
        rng.shuffle(kinds)
        messages = _turns(scene, kinds, rng)
    else:
        messages = _turns(scene, ["shape"], rng)
    return messages, [image_bytes(scene)]
