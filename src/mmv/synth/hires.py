"""The high-resolution task (`mmv data synth --hires`): one tiny shape somewhere in a large image.

The image is 512x512 and the shape about 12 pixels across, centred on a cell of the 32-pixel grid, so with
`--tiles 4` each 256-pixel tile shows it at full size on a patch of the encoder, as the 256-pixel scenes show
theirs. Squeezed into one 256-pixel view it is a blob of 6 pixels whose colour survives and whose outline does not:
the held-out questions ask its shape, which needs the tiles (a third is chance).
"""

from __future__ import annotations

import random
from typing import Any

from mmv.synth import captions
from mmv.synth.scenes import BACKGROUNDS, CELL, COLOURS, SHAPES, Scene, draw, jpeg_bytes

HIRES_SIZE = 512
RADIUS = 6  # pixels at 512: half a 32-pixel patch across at full size, 6 pixels across once squeezed to 256
CELLS = HIRES_SIZE // CELL

Row = tuple[list[dict[str, Any]], list[bytes]]


def tiny_scene(rng: random.Random) -> Scene:
    column, row = rng.randrange(CELLS), rng.randrange(CELLS)
    return Scene(
        shape=rng.choice(SHAPES),
        colour=rng.choice(tuple(COLOURS)),
        size="tiny",
        centres=((column * CELL + CELL // 2, row * CELL + CELL // 2),),
        radius=RADIUS,
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
