"""The one verdict on a dataset row, shared by training, `mmv data check`, `mmv data preview` and `mmv eval`.

A row is parsed and checked without a tokenizer (`mmv.data.rows`: json, unicode, schema, markers), rendered and
labelled as training renders it when a `LabelBuilder` is given (placeholder runs as rendered, too_long), and its
images are decoded (image). The first failing check raises `BadRow` and names the row's kind, so every tool skips
the same rows for the same reason. Training from a feature cache (`mmv.data.features`) swaps the decoding for the
cache's lookup, which raises the same BadRow for the rows whose images failed when the cache was built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.data.labels import LabelBuilder, Preprocessing, Sample
from mmv.data.rows import BadRow, parse_row
from mmv.errors import MmvError

if TYPE_CHECKING:
    from PIL import Image

    from mmv.vision_input.tiles import TileGrid, Tiling

# (a row's image bytes in marker order, its global row number) -> its images as training uses them, or BadRow("image")
ImageSource = Callable[[list[bytes], int], list[Any]]


@dataclass
class ValidRow:
    messages: list[dict[str, Any]]
    images: list[Any]  # decoded PIL images in marker order (cached features from a cache); none for text-only rows
    sample: Sample | None  # token ids and labels as training builds them; None without a LabelBuilder
    grids: list[TileGrid] | None = None  # each image's tiles when images are tiled


def decode_images(images: list[bytes]) -> list[Image.Image]:
    from mmv.images import open_image

    try:
        return [open_image(data, name=f"#{k + 1}") for k, data in enumerate(images)]
    except MmvError as exc:
        raise BadRow("image", str(exc)) from None


def decode_row_images(images: list[bytes], row: int) -> list[Image.Image]:
    return decode_images(images)


class RowValidator:
    """`labels` None: only the checks that need no tokenizer. `preprocessing` (training's random system prompt and
    empty-think dropping, seeded by seed, epoch and row) None: the row as it is stored. `images`: where the images
    come from, decoded from the row by default. `tiling` (more than one tile): each image's placeholder text follows
    its tile grid, so images are decoded before the row is rendered (a feature cache holds whole images, so the
    two do not combine)."""

    def __init__(
        self,
        labels: LabelBuilder | None = None,
        preprocessing: Preprocessing | None = None,
        seed: int = 0,
        images: ImageSource = decode_row_images,
        tiling: Tiling | None = None,
    ) -> None:
        self.labels = labels
        self.preprocessing = preprocessing
        self.seed = seed
        self.images = images
        self.tiling = tiling if tiling is not None and tiling.max_tiles > 1 else None
        if self.tiling is not None and images is not decode_row_images:
            raise MmvError(
                "tiled images (more than one tile) cannot come from a feature cache, which holds whole images",
                option="tiles",
            )

    @property
    def renders(self) -> bool:
        """Whether the checks that need the tokenizer run (rendered placeholder runs, length)."""
        return self.labels is not None

    def validate(self, conversations: Any, image_bytes: Any, row: int = 0, epoch: int = 0) -> ValidRow:
        messages, images = parse_row(conversations, image_bytes)
        decoded = decode_images(images) if self.tiling is not None else None
        grids = self.tiling.grids(decoded) if self.tiling is not None and decoded is not None else None
        sample = None
        if self.labels is not None:
            system, drop_think = None, False
            if self.preprocessing is not None:
                system, drop_think = self.preprocessing.choose(self.seed, epoch, row, messages)
            sample = self.labels.build(messages, len(images), system, drop_think, grids)
        return ValidRow(messages, decoded if decoded is not None else self.images(images, row), sample, grids)
