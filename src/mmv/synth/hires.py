"""The high-resolution task (`mmv data synth --hires`): a square of one-pixel lines that only a full-size view shows.

Made for the demo's 128-pixel encoder (`mmv demo --hires`: 16-pixel patches, 2x2 of them merged into each of a
view's 16 tokens). The image is 256x256: a plain background and one square 72-96 pixels across, whole inside one
quarter of the image (one tile of a 2x2 grid) anywhere in it: a 4-pixel frame in the square's colour around lines
one pixel wide, light and dark in turn, along the rows (horizontal stripes), the columns (vertical stripes) or both
(a checkerboard). The lines follow the image's own pixel grid, so every 16-pixel patch of a tile inside the square
sees them in the same phase, and they are the same two greys in every image, so a pattern looks the same to a
patch whatever the colour.

Squeezed into one 128-pixel view (`--tiles 1`, or the global view at `--tiles 4`), every two pixels become one:
the antialiased downscale averages each pair of lines into the same flat grey whichever way they run, so the
squeezed view is the same picture for the three patterns (to within 3 of 255 levels of rounding, at the edges)
and the pattern can only be guessed (a third), while a tile shows it at full size. Nothing else tells the
pattern: each is half light and half dark, the lines fade in over FADE pixels inside the frame (so that even the
edges squeeze alike), and the image is stored as PNG (a JPEG's rounding would differ with the pattern). Held-out
questions ask the pattern; SFT also asks the frame's colour, which the squeeze keeps.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.synth import captions
from mmv.synth.scenes import BACKGROUNDS, COLOURS

if TYPE_CHECKING:
    from PIL import Image

HIRES_SIZE = 256
ENCODER_SIDE = 128  # the native side of the encoder the task is made for: a 2x2 grid of tiles shows it at full size
ENCODER_PATCH = 16  # its patch: 8x8 patches a view, the square covers several of them whole in its tile
MERGE = 2  # its projector stacks 2x2 patches into one token: 16 tokens a view
# the answer's words for each pattern; rows alternate for horizontal stripes, columns for vertical ones
PATTERNS = {"horizontal": "horizontal stripes", "vertical": "vertical stripes", "checkerboard": "a checkerboard"}
# the square's side: even, so that its lines are as many light as dark; whole patches of a tile fit inside its
# lines wherever it lies (at least 3x3), and it leaves room to move in its quarter
SIDES = range(72, 97, 2)
# the lines' two colours, the same in every image, so that a pattern looks the same to a patch whatever the colour
# (lines in the square's colour left the demo at chance after 600 steps: BENCHMARKS.md)
LINES = ((235, 235, 235), (20, 20, 20))
FRAME = 4  # the square's border in its colour, around the lines
MARGIN = 4  # pixels between the square and its tile's border
# pixels over which the lines' contrast rises from nothing at the frame to full: with hard edges the squeezed
# views of two patterns differed by up to 38 levels along the edges, at 2 pixels by 12, at 8 by 3
FADE = 8
QUESTIONS = (
    "What pattern does the square have?",
    "Which pattern fills the square?",
    "Which pattern does the square show?",
)

Row = tuple[list[dict[str, Any]], list[bytes]]


@dataclass(frozen=True)
class StripedSquare:
    pattern: str  # one of PATTERNS
    colour: str  # one of COLOURS
    background: tuple[int, int, int]
    left: int
    top: int
    side: int


def striped_square(rng: random.Random) -> StripedSquare:
    """A square whole inside one of the image's four quarters, anywhere in it."""
    side = rng.choice(SIDES)
    tile_x, tile_y = rng.randrange(2) * ENCODER_SIDE, rng.randrange(2) * ENCODER_SIDE
    span = ENCODER_SIDE - side - 2 * MARGIN
    return StripedSquare(
        pattern=rng.choice(tuple(PATTERNS)),
        colour=rng.choice(tuple(COLOURS)),
        background=rng.choice(BACKGROUNDS),
        left=tile_x + MARGIN + rng.randint(0, span),
        top=tile_y + MARGIN + rng.randint(0, span),
        side=side,
    )


def draw_square(square: StripedSquare) -> Image.Image:
    """The image: a frame in the square's colour around the lines, which are mid-grey plus or minus half the
    contrast, times the fade."""
    import numpy as np
    from PIL import Image

    inner = square.side - 2 * FRAME
    steps = np.arange(inner)
    ramp = np.clip(np.minimum(steps + 0.5, inner - steps - 0.5) / FADE, 0.0, 1.0)
    top, left = square.top + FRAME, square.left + FRAME
    # (-1) to the power of the image row (column): the sign of each row's (column's) line
    rows = ramp * (1 - 2 * ((steps + top) % 2)) if square.pattern != "vertical" else ramp
    columns = ramp * (1 - 2 * ((steps + left) % 2)) if square.pattern != "horizontal" else ramp
    light, dark = np.array(LINES, float)
    lines = (light + dark) / 2 + np.outer(rows, columns)[..., None] * (light - dark) / 2
    pixels = np.empty((HIRES_SIZE, HIRES_SIZE, 3), np.uint8)
    pixels[:] = square.background
    pixels[square.top : square.top + square.side, square.left : square.left + square.side] = COLOURS[square.colour]
    pixels[top : top + inner, left : left + inner] = np.rint(lines)
    return Image.fromarray(pixels)


def image_bytes(square: StripedSquare) -> bytes:
    buffer = io.BytesIO()
    draw_square(square).save(buffer, format="PNG", compress_level=1)  # lossless at any level; 1 is the fastest
    return buffer.getvalue()


def caption(square: StripedSquare) -> str:
    """'One red square with horizontal stripes.'"""
    return f"One {square.colour} square with {PATTERNS[square.pattern]}."


def ask(square: StripedSquare, kind: str, rng: random.Random) -> captions.Turn:
    if kind == "pattern":
        return captions.Turn(rng.choice(QUESTIONS), f"The square has {PATTERNS[square.pattern]}.", kind)
    return captions.Turn(rng.choice(captions.QUESTIONS["colour"]), f"The colour is {square.colour}.", kind)


def question_kind(question: str) -> str | None:
    """'pattern' for a pattern question of this task, else None."""
    return "pattern" if question in QUESTIONS else None


def _turns(square: StripedSquare, kinds: list[str], rng: random.Random) -> list[dict[str, str]]:
    messages = []
    for i, kind in enumerate(kinds):
        turn = ask(square, kind, rng)
        messages += [
            {"role": "user", "content": ("<image>\n" if i == 0 else "") + turn.question},
            {"role": "assistant", "content": turn.answer},
        ]
    return messages


def hires_row(split: str, rng: random.Random) -> Row:
    """pretrain: a caption; sft: the pattern, and half the time its colour too, in either order; eval: the pattern."""
    square = striped_square(rng)
    if split == "pretrain":
        prompt = rng.choice(captions.CAPTION_PROMPTS)
        messages = [
            {"role": "user", "content": f"<image>\n{prompt}"},
            {"role": "assistant", "content": caption(square)},
        ]
    elif split == "sft":
        kinds = ["pattern", "colour"] if rng.random() < 0.5 else ["pattern"]
        rng.shuffle(kinds)
        messages = _turns(square, kinds, rng)
    else:
        messages = _turns(square, ["pattern"], rng)
    return messages, [image_bytes(square)]
