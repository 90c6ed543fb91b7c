"""The high-resolution task (`mmv data synth --hires`): one small shape somewhere in an image twice the encoder's side.

Made for the demo's 128-pixel encoder (`mmv demo --hires`, 32-pixel patches): the image is 256x256 and the shape
24-30 pixels across, centred on a cell of the 32-pixel grid, so with `--tiles 4` each 128-pixel tile shows it at
full size, centred on one patch, as the 256-pixel scenes show their small shapes. Squeezed into one 128-pixel view
it is 12-15 pixels across and off the centre of its patch (at one of four places), its outline blurred; the
held-out questions ask its shape (a third is chance).
"""

from __future__ import annotations

import random
from typing import Any

from mmv.synth import captions
from mmv.synth.scenes import BACKGROUNDS, CELL, COLOURS, SHAPES, Scene, draw, jpeg_bytes

HIRES_SIZE = 256
ENCODER_SIDE = 128  # the native side of the encoder the task is made for: a 2x2 grid of tiles shows it at full size
ENCODER_PATCH = CELL  # its patch, the scenes' 32-pixel cell: a shape fills one patch of a tile
# Each shape's radius, so that all three cover about the same area (441-489 pixels; at one radius a triangle has
# 60% of a circle's): a squeeze keeps a shape's amount of colour, so unequal areas would tell its shape through the
# global view alone. All fit inside one 32-pixel patch: at most 31 pixels across in a tile, 16 once squeezed.
RADII = {"circle": 12, "square": 12, "triangle": 15}
RADIUS = max(RADII.values())
CELLS = HIRES_SIZE // CELL

Row = tuple[list[dict[str, Any]], list[bytes]]


def tiny_scene(rng: random.Random) -> Scene:
    column, row = rng.randrange(CELLS), rng.randrange(CELLS)
    shape = rng.choice(SHAPES)
    return Scene(
        shape=shape,
        colour=rng.choice(tuple(COLOURS)),
        size="tiny",
        centres=((column * CELL + CELL // 2, row * CELL + CELL // 2),),
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
