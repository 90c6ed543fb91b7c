"""The one verdict on a dataset row, shared by training, `mmv data check`, `mmv data preview` and `mmv eval`.

A row is parsed and checked without a tokenizer (`mmv.data.rows`: json, unicode, schema, markers), rendered and
labelled as training renders it when a `LabelBuilder` is given (placeholder runs as rendered, too_long), and its
images are decoded (image). A row with `video_bytes` has its video sampled to `frames` frames (a video that cannot
be read is an image problem, as a bad image is); its `<image>` marker becomes one line per frame, "Frame k at t s:"
and the frame's own marker, so from there on the frames are images like any other. The first failing check raises
`BadRow` and names the row's kind, so every tool skips the same rows for the same reason. Training from a feature
cache (`mmv.data.features`) swaps the decoding for the cache's lookup, which raises the same BadRow for the rows
whose images failed when the cache was built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER
from mmv.data.labels import LabelBuilder, Preprocessing, Sample
from mmv.data.rows import IMAGE_ROLES, BadRow, parse_row, parse_video_row
from mmv.errors import MmvError
from mmv.vision_input.video import check_frames

if TYPE_CHECKING:
    from PIL import Image

    from mmv.vision_input.tiles import TileGrid, Tiling
    from mmv.vision_input.video import Frame

# (a row's image bytes in marker order, its global row number) -> its images as training uses them, or BadRow("image")
ImageSource = Callable[[list[bytes], int], list[Any]]


@dataclass
class ValidRow:
    messages: list[dict[str, Any]]  # a video row's with its frames' lines in place of its marker
    # decoded PIL images (a video's frames) in marker order (cached features from a cache); none for text-only rows
    images: list[Any]
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


def decode_video(data: bytes, frames: int) -> list[Frame]:
    from mmv.vision_input.video import pyav, sample_frames

    pyav()  # a missing PyAV stops the run; only the video itself can be a bad row
    try:
        return sample_frames(data, frames, name="in video_bytes")
    except MmvError as exc:
        raise BadRow("image", str(exc)) from None


def place_frames(messages: list[dict[str, Any]], frames: list[Frame]) -> list[dict[str, Any]]:
    """The messages with the video's one marker replaced by its frames' lines."""
    from mmv.vision_input.video import frames_prompt

    lines = frames_prompt(frames).rstrip("\n")
    return [
        {**turn, "content": turn["content"].replace(IMAGE_MARKER, lines)} if turn["role"] in IMAGE_ROLES else turn
        for turn in messages
    ]


class RowValidator:
    """`labels` None: only the checks that need no tokenizer. `preprocessing` (training's random system prompt and
    empty-think dropping, seeded by seed, epoch and row) None: the row as it is stored. `images`: where the images
    come from, decoded from the row by default. `tiling` (more than one tile): each image's placeholder text follows
    its tile grid, so images are decoded before the row is rendered (a feature cache holds whole images, so the
    two do not combine). `frames`: the frames a video row is sampled to (mmv.vision_input.video)."""

    def __init__(
        self,
        labels: LabelBuilder | None = None,
        preprocessing: Preprocessing | None = None,
        seed: int = 0,
        images: ImageSource = decode_row_images,
        tiling: Tiling | None = None,
        frames: int = 8,
    ) -> None:
        self.labels = labels
        self.frames = check_frames(frames)
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

    def validate(
        self, conversations: Any, image_bytes: Any, row: int = 0, epoch: int = 0, video_bytes: Any = None
    ) -> ValidRow:
        if video_bytes is None:
            messages, images = parse_row(conversations, image_bytes)
            decoded = decode_images(images) if self.tiling is not None else None
        else:
            messages, decoded = self._video_row(conversations, image_bytes, video_bytes)
            images = decoded
        grids = self.tiling.grids(decoded) if self.tiling is not None and decoded is not None else None
        sample = None
        if self.labels is not None:
            system, drop_think = None, False
            if self.preprocessing is not None:
                system, drop_think = self.preprocessing.choose(self.seed, epoch, row, messages)
            sample = self.labels.build(messages, len(images), system, drop_think, grids)
        return ValidRow(messages, decoded if decoded is not None else self.images(images, row), sample, grids)

    def _video_row(
        self, conversations: Any, image_bytes: Any, video_bytes: Any
    ) -> tuple[list[dict[str, Any]], list[Image.Image]]:
        messages, video = parse_video_row(conversations, image_bytes, video_bytes)
        if self.images is not decode_row_images:
            raise MmvError(
                "a feature cache holds whole images, not a video's frames: train data with video_bytes without one",
                option="feature_cache",
            )
        frames = decode_video(video, self.frames)
        return place_frames(messages, frames), [frame.image for frame in frames]
