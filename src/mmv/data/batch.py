"""The training batch: what the data loader yields and the trainer consumes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long, right-padded with the pad id (0) to the longest sample
    labels: torch.Tensor  # [B, T] long, -100 outside supervised assistant spans and on padding
    pixel_inputs: dict[str, torch.Tensor] | None = None  # the image processor's output for every image, in order
    # from a feature cache instead: every image's encoder output (last_hidden_state) [images, tokens, dim], in order
    image_features: torch.Tensor | None = None
    num_images: int = 0
    # packing only: several samples per row, attention kept inside each (segment ids), positions restart at 0
    segment_ids: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    num_samples: int = 0  # samples (not rows) in this batch, the unit of the resume position
    rows: list[int] = field(default_factory=list)  # global row indices, for error reports and --show-sample
    # the global sample position just past this batch's chunk (over all ranks): the resume position after it
    next_sample: int = 0
    # rows of this batch's positions that were skipped, as mmv.data.skips.Skipped (row, kind, reason)
    skipped: list[Any] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        """Non-padding tokens (for tokens/s)."""
        if self.segment_ids is not None:
            return int((self.segment_ids >= 0).sum())
        return int((self.input_ids != 0).sum())

    def pin_memory(self) -> Batch:
        """Page-locked copy, so `to(cuda, non_blocking)` really overlaps (DataLoader(pin_memory=True) calls this)."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str, float_dtype: torch.dtype | None = None) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            kwargs: dict[str, Any] = {"device": device, "non_blocking": True}
            if float_dtype is not None and t.is_floating_point():
                kwargs["dtype"] = float_dtype
            return t.to(**kwargs)

        return self._map(move)

    def _map(self, move: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return Batch(
            input_ids=move(self.input_ids),
            labels=move(self.labels),
            pixel_inputs={k: move(v) for k, v in self.pixel_inputs.items()} if self.pixel_inputs else None,
            image_features=move(self.image_features) if self.image_features is not None else None,
            num_images=self.num_images,
            segment_ids=move(self.segment_ids) if self.segment_ids is not None else None,
            position_ids=move(self.position_ids) if self.position_ids is not None else None,
            num_samples=self.num_samples,
            rows=self.rows,
            next_sample=self.next_sample,
            skipped=self.skipped,
        )
