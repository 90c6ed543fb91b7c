"""The video task (`mmv data synth --video`): short clips of shapes that move or appear, asked about in time.

A clip is 8 frames of 128x128 at 4 fps (2 s), stored as MP4 in the row's `video_bytes`. Two kinds of clip:
- motion: one shape slides three cells of the 16-pixel grid left, right, up or down ("Which way does the red circle
  move?"). The axis cannot be told from any one frame, and where on the grid the shape starts says little about the
  way it goes, so the frames must be compared.
- last: two of a circle, a square and a triangle are there from frame 0, the third appears at frame 4, and all
  stay ("Which shape appears last?"). Only the order of the frames tells the last from the others; two frames
  sampled uniformly (frames 2 and 6) show it, as do four (1, 3, 5, 7).
Shapes sit on cell centres, as in the still scenes (mmv.synth.scenes), at half their scale: one cell is one patch
of an encoder that sees the frames at 128 pixels in 16-pixel patches (the demo's) or at 256 in 32-pixel ones.
Chance on the held-out questions is 1/4 (motion) and 1/3 (last).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from mmv.synth.clips import mp4_bytes
from mmv.synth.scenes import BACKGROUNDS, COLOURS, SHAPES, Scene, paint

CLIP_SIZE = 128
CLIP_FRAMES = 8
CELL = 16  # the scenes' 32-pixel cell at half scale: one patch of the 8x8 grid the tiny encoders see
CELLS = CLIP_SIZE // CELL
RADIUS = 10  # the scenes' large shapes at half scale
TRAVEL = 3  # cells a moving shape covers over the clip
APPEARS_AT = (0, 0, 4)  # the frames at which the three shapes of a "last" clip appear
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
KINDS = ("motion", "last")

MOTION_QUESTIONS = ("Which way does the {colour} {shape} move?", "In which direction does the {colour} {shape} move?")
LAST_QUESTIONS = ("Which shape appears last?", "What shape shows up last?")
VIDEO_PROMPTS = ("Describe the video.", "What happens in this clip?")

Row = tuple[list[dict[str, Any]], list[bytes], bytes]


def _centre(column: int, row: int) -> tuple[int, int]:
    return column * CELL + CELL // 2, row * CELL + CELL // 2


def _still(rng: random.Random, shape: str, centres: tuple[tuple[int, int], ...] = ()) -> Scene:
    return Scene(shape, rng.choice(tuple(COLOURS)), "large", centres, RADIUS, BACKGROUNDS[0])


def motion_clip(rng: random.Random) -> tuple[list[Scene], str]:
    """One scene per frame of a shape moving one way, and that way."""
    direction = rng.choice(tuple(DIRECTIONS))
    dx, dy = DIRECTIONS[direction]
    # the start leaves room for the travel; the other coordinate is anywhere
    low = [TRAVEL if d < 0 else 0 for d in (dx, dy)]
    high = [CELLS - 1 - (TRAVEL if d > 0 else 0) for d in (dx, dy)]
    column, row = (rng.randint(low[i], high[i]) for i in range(2))
    shape = _still(rng, rng.choice(SHAPES))
    steps = [round(k * TRAVEL / (CLIP_FRAMES - 1)) for k in range(CLIP_FRAMES)]
    return [replace(shape, centres=(_centre(column + dx * s, row + dy * s),)) for s in steps], direction


def last_clip(rng: random.Random) -> tuple[list[Scene], list[Scene]]:
    """One list of visible shapes per frame, and the three shapes in the order they appear."""
    cells = rng.sample([(c, r) for c in range(CELLS) for r in range(CELLS)], len(APPEARS_AT))
    order = rng.sample(SHAPES, len(SHAPES))
    shapes = [_still(rng, shape, (_centre(*cell),)) for shape, cell in zip(order, cells, strict=True)]
    frames = [[s for s, at in zip(shapes, APPEARS_AT, strict=True) if at <= k] for k in range(CLIP_FRAMES)]
    return frames, shapes


def render(frames: list[list[Scene]], background: tuple[int, int, int]) -> bytes:
    """Each frame's shapes drawn over one background, encoded as an MP4 clip."""
    from PIL import Image, ImageDraw

    pictures = []
    for shapes in frames:
        picture = Image.new("RGB", (CLIP_SIZE, CLIP_SIZE), background)
        for shape in shapes:
            paint(ImageDraw.Draw(picture), shape)
        pictures.append(picture)
    return mp4_bytes(pictures)


def _user(text: str) -> dict[str, str]:
    """The question after the clip's marker, where its frames go."""
    return {"role": "user", "content": f"<image>\n{text}"}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def video_row(split: str, rng: random.Random, index: int) -> Row:
    """pretrain: what happens; sft: the question of its kind; eval: the same, motion and last in turn."""
    kind = KINDS[index % len(KINDS)] if split == "eval" else rng.choice(KINDS)
    background = rng.choice(BACKGROUNDS)
    if kind == "motion":
        scenes, direction = motion_clip(rng)
        shape = scenes[0]
        video = render([[scene] for scene in scenes], background)
        question = rng.choice(MOTION_QUESTIONS).format(colour=shape.colour, shape=shape.shape)
        reply = f"It moves {direction}."
        story = f"A {shape.colour} {shape.shape} moves {direction}."
    else:
        frames, shapes = last_clip(rng)
        video = render(frames, background)
        question, reply = rng.choice(LAST_QUESTIONS), f"The last is a {shapes[-1].shape}."
        story = f"A {shapes[0].shape} and a {shapes[1].shape} are there, then a {shapes[2].shape} appears."
    if split == "pretrain":
        return [_user(rng.choice(VIDEO_PROMPTS)), _assistant(story)], [], video
    return [_user(question), _assistant(reply)], [], video


def question_kind(question: str) -> str | None:
    """motion or last for a question of this task (its last line), else None."""
    text = question.splitlines()[-1] if question else ""
    if any(text.startswith(asked.split("{")[0]) for asked in MOTION_QUESTIONS):
        return "motion"
    return "last" if text in LAST_QUESTIONS else None
