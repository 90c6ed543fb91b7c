"""Samples -> one Batch: padded to the longest sample, or packed several to a row.

Images are processed in the order their placeholder runs appear in the batch (row by row, left to right), which is
the order `MiniMindVLM.embed` fills them in. Samples read from a feature cache carry their images' encoder features
(tensors) instead of PIL images: those are stacked, not processed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mmv.data.batch import Batch
from mmv.model.loss import IGNORE_INDEX

if TYPE_CHECKING:
    from PIL import Image

PAD_ID = 0
PAD_SEGMENT = -1


@dataclass
class PreparedSample:
    """One usable sample: tokens, labels and its decoded images (or their cached encoder features)."""

    row: int  # global row number
    input_ids: list[int]
    labels: list[int]
    # what the encoder sees (a tiled image's every view), or the cached encoder features of whole images
    images: list[Image.Image] | list[torch.Tensor] = field(default_factory=list)


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: sample indices per row, each row's total length <= capacity."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[index] <= free:
                rows[r].append(index)
                room[r] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(capacity - lengths[index])
    return rows


def collate(
    samples: list[PreparedSample],
    *,
    pack: bool,
    max_seq_len: int,
    process: Callable[[list[Image.Image]], dict[str, torch.Tensor]] | None,
    **extra: Any,
) -> Batch:
    """`extra` carries the bookkeeping fields of Batch (num_samples, next_sample, skipped)."""
    if not samples:
        empty = torch.zeros((0, 0), dtype=torch.long)
        return Batch(input_ids=empty, labels=empty.clone(), **extra)
    layout = pack_rows([len(s.input_ids) for s in samples], max_seq_len) if pack else [[i] for i in range(len(samples))]
    width = max(sum(len(samples[i].input_ids) for i in row) for row in layout)
    input_ids = torch.full((len(layout), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(layout), width), IGNORE_INDEX, dtype=torch.long)
    segments = torch.full((len(layout), width), PAD_SEGMENT, dtype=torch.long) if pack else None
    positions = torch.zeros((len(layout), width), dtype=torch.long) if pack else None
    order: list[PreparedSample] = []
    for r, row in enumerate(layout):
        column = 0
        for segment, index in enumerate(row):
            sample = samples[index]
            end = column + len(sample.input_ids)
            input_ids[r, column:end] = torch.tensor(sample.input_ids)
            labels[r, column:end] = torch.tensor(sample.labels)
            if pack:
                segments[r, column:end] = segment
                positions[r, column:end] = torch.arange(end - column)
            column = end
            order.append(sample)
    images = [image for sample in order for image in sample.images]
    features = bool(images) and isinstance(images[0], torch.Tensor)
    return Batch(
        input_ids=input_ids,
        labels=labels,
        pixel_inputs=process(images) if images and not features and process is not None else None,
        image_features=torch.stack(images) if features else None,
        num_images=len(images),
        segment_ids=segments,
        position_ids=positions,
        rows=[sample.row for sample in order],
        **extra,
    )
