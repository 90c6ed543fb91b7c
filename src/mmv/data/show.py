"""One training sample as text, the way `--show-sample` prints it: supervised spans between ⟦ and ⟧, each image
placeholder run collapsed to `[image: N tokens]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from mmv.config import IMAGE_TOKEN
from mmv.data.batch import Batch
from mmv.errors import MmvError
from mmv.model.loss import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

OPEN, CLOSE = "⟦", "⟧"


def sample_span(batch: Batch, index: int) -> tuple[int, int, int]:
    """(batch row, first column, end column) of the index-th sample, in the order of `batch.rows`."""
    if not 0 <= index < len(batch.rows):
        raise MmvError(f"sample {index} is not in this batch, which holds {len(batch.rows)} sample(s)")
    if batch.segment_ids is None:
        nonpad = (batch.input_ids[index] != 0).nonzero()
        return index, 0, int(nonpad[-1]) + 1 if len(nonpad) else 0
    seen = 0
    for row, segments in enumerate(batch.segment_ids.tolist()):
        count = max(segments) + 1
        if index < seen + count:
            columns = [c for c, s in enumerate(segments) if s == index - seen]
            return row, columns[0], columns[-1] + 1
        seen += count
    raise AssertionError("segment ids do not cover batch.rows")


def render_sample(
    tokenizer: PreTrainedTokenizerFast, batch: Batch, index: int, locate: Callable[[int], str] | None = None
) -> str:
    row, begin, end = sample_span(batch, index)
    ids = batch.input_ids[row, begin:end].tolist()
    supervised = (batch.labels[row, begin:end] != IGNORE_INDEX).tolist()
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    parts: list[str] = []
    start = 0
    while start < len(ids):  # runs of equal (is image, is supervised)
        key = (ids[start] == image_id, supervised[start])
        stop = start
        while stop < len(ids) and (ids[stop] == image_id, supervised[stop]) == key:
            stop += 1
        text = f"[image: {stop - start} tokens]" if key[0] else tokenizer.decode(ids[start:stop])
        parts.append(f"{OPEN}{text}{CLOSE}" if key[1] else text)
        start = stop
    images = sum(1 for i, token in enumerate(ids) if token == image_id and (i == 0 or ids[i - 1] != image_id))
    where = locate(batch.rows[index]) if locate else f"row {batch.rows[index]}"
    header = (
        f"--- sample {index}: {where}, {len(ids)} tokens, {images} image(s), "
        f"{int(torch.tensor(supervised).sum())} supervised ---"
    )
    return header + "\n" + "".join(parts)
