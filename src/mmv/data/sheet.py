"""A contact sheet of a dataset's first rows: each row's images with its first question and answer beneath.

The quickest way to see that images and text belong together. Text-only rows show a grey box; rows that cannot be
used (by the checks that need no tokenizer, `mmv.data.validate`) show what is wrong, in red.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from mmv.data.parquet import iter_rows
from mmv.data.rows import BadRow
from mmv.data.validate import RowValidator
from mmv.errors import MmvError
from mmv.fsio import atomic_path, refuse_input_as_output


@dataclass(frozen=True)
class SheetLayout:
    columns: int = 4
    thumb: int = 224  # pixels per cell side for the images
    text_lines: int = 5  # lines of first-turn text under each cell
    font_size: int = 13
    gap: int = 8


def first_turn(messages: list[dict[str, Any]]) -> str:
    """The first user question and the reply to it, markers dropped."""
    question = next((m["content"] for m in messages if m["role"] == "user"), "")
    reply = next((m["content"] for m in messages if m["role"] == "assistant"), "")
    question = " ".join(question.replace("<image>", " ").split())
    return f"Q: {question}\nA: {' '.join(reply.split())}"


def _cell_images(images: list[Image.Image], thumb: int) -> Image.Image:
    """Several images share the cell side by side."""
    cell = Image.new("RGB", (thumb, thumb), (245, 245, 245))
    width = thumb // max(1, len(images))
    for k, picture in enumerate(images):
        picture.thumbnail((width - 2, thumb))
        cell.paste(picture, (k * width + (width - picture.width) // 2, (thumb - picture.height) // 2))
    return cell


def _placeholder(thumb: int, text: str, colour: tuple[int, int, int]) -> Image.Image:
    cell = Image.new("RGB", (thumb, thumb), colour)
    ImageDraw.Draw(cell).text((10, thumb // 2 - 10), text, fill=(255, 255, 255), font=ImageFont.load_default(size=18))
    return cell


def render_cell(
    index: int, conversations: Any, image_bytes: Any, layout: SheetLayout, video_bytes: Any = None
) -> tuple[Image.Image, str, bool]:
    """(picture, caption text, whether the row is usable); a video shows its sampled frames."""
    try:
        valid = RowValidator().validate(conversations, image_bytes, video_bytes=video_bytes)
    except BadRow as exc:
        return _placeholder(layout.thumb, f"row {index}: unusable", (190, 40, 40)), f"#{index} {exc}", False
    images = valid.images
    picture = _cell_images(images, layout.thumb) if images else _placeholder(layout.thumb, "text only", (150, 150, 150))
    return picture, f"#{index} " + first_turn(valid.messages), True


def contact_sheet(path: str | Path, out: str | Path, rows: int = 12, layout: SheetLayout | None = None) -> int:
    """Draw the first `rows` rows of a parquet file into a PNG at `out`; return how many rows were drawn."""
    layout = layout or SheetLayout()
    refuse_input_as_output(out, [path])
    cells = [render_cell(i, c, b, layout, v) for i, (c, b, v) in enumerate(itertools.islice(iter_rows(path), rows))]
    if not cells:
        raise MmvError(f"{path} holds no rows")
    font = ImageFont.load_default(size=layout.font_size)
    line_height = layout.font_size + 3
    cell_w, cell_h = layout.thumb, layout.thumb + layout.text_lines * line_height + layout.gap
    cols = min(layout.columns, len(cells))
    grid_rows = -(-len(cells) // cols)
    sheet = Image.new("RGB", (cols * (cell_w + layout.gap) + layout.gap, grid_rows * cell_h + layout.gap), "white")
    canvas = ImageDraw.Draw(sheet)
    chars = max(10, int(layout.thumb / (layout.font_size * 0.55)))
    for k, (picture, caption, usable) in enumerate(cells):
        x = layout.gap + (k % cols) * (cell_w + layout.gap)
        y = layout.gap + (k // cols) * cell_h
        sheet.paste(picture, (x, y))
        lines = [w for part in caption.split("\n") for w in textwrap.wrap(part, chars) or [""]]
        for n, line in enumerate(lines[: layout.text_lines]):
            canvas.text(
                (x, y + layout.thumb + 2 + n * line_height),
                line,
                font=font,
                fill=(20, 20, 20) if usable else (190, 40, 40),
            )
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return len(cells)
