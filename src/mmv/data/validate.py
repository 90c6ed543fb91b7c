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

# (a row's image bytes in marker order, its global row number) -> its images as training uses them, or BadRow("image")
ImageSource = Callable[[list[bytes], int], list[Any]]


@dataclass
class ValidRow:
    messages: list[dict[str, Any]]
    images: list[Any]  # decoded PIL images in marker order (cached features from a cache); none for text-only rows
    sample: Sample | None  # token ids and labels as training builds them; None without a LabelBuilder


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
    come from, decoded from the row by default."""

    def __init__(
        self,
        labels: LabelBuilder | None = None,
        preprocessing: Preprocessing | None = None,
        seed: int = 0,
        images: ImageSource = decode_row_images,
    ) -> None:
        self.labels = labels
        self.preprocessing = preprocessing
        self.seed = seed
        self.images = images

    @property
    def renders(self) -> bool:
        """Whether the checks that need the tokenizer run (rendered placeholder runs, length)."""
        return self.labels is not None

    def validate(self, conversations: Any, image_bytes: Any, row: int = 0, epoch: int = 0) -> ValidRow:
        messages, images = parse_row(conversations, image_bytes)
        sample = None
        if self.labels is not None:
            system, drop_think = None, False
            if self.preprocessing is not None:
                system, drop_think = self.preprocessing.choose(self.seed, epoch, row, messages)
            sample = self.labels.build(messages, len(images), system, drop_think)
        return ValidRow(messages, self.images(images, row), sample)
