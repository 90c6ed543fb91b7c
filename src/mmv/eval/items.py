"""Dataset rows -> evaluation items: the conversation up to its last user turn and the reply that follows it.

Rows are streamed from the parquet files a few at a time and judged by the validator training uses
(`mmv.data.validate`, at the model's position limit), so a row training would skip is skipped here too, under the
same kind. Two more reasons are eval's own: no_reference (no assistant reply follows the last user turn) and
too_long when the prompt with the reference answer or with the new tokens would not fit the model's positions.
Skipped rows are counted by kind and named, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_TOKEN
from mmv.data.labels import LabelBuilder
from mmv.data.parquet import iter_rows
from mmv.data.rows import BadRow, marker_count
from mmv.data.skips import Skips
from mmv.data.validate import RowValidator

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedTokenizerFast

    from mmv.vision_input.tiles import Tiling


@dataclass(frozen=True)
class PromptFormat:
    """How the prompts are rendered, and the room the model has for them."""

    tokens_per_image: int = 64
    positions: int = 32768  # the model's max_position_embeddings
    max_new_tokens: int = 64
    thinking: bool = False  # open the think block in the generation prompt
    image_token: str = IMAGE_TOKEN  # the placeholder's text: the model's image_special_token


@dataclass
class EvalItem:
    file: str
    row: int  # within its file
    messages: list[dict[str, Any]]  # up to and including the last user turn
    reference: str  # the assistant's reply to it, think block removed
    images: list[Image.Image]  # every image the messages refer to, in order, decoded
    prompt_ids: list[int]  # the messages rendered with the generation prompt, image runs expanded
    answer_ids: list[int]  # the reference and the closing <|im_end|>

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def strip_think(text: str) -> str:
    """The answer part of a reply: whatever follows a closing `</think>`, trimmed."""
    return text.split("</think>")[-1].strip()


class ItemReader:
    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, prompt: PromptFormat, tiling: Tiling | None = None, frames: int = 8
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.validator = RowValidator(
            LabelBuilder(tokenizer, prompt.positions, prompt.tokens_per_image, prompt.image_token),
            tiling=tiling,
            frames=frames,
        )

    def item(self, file: str, row: int, conversations: Any, image_bytes: Any, video_bytes: Any = None) -> EvalItem:
        from mmv.tokenizer import encode, render_chat

        valid = self.validator.validate(conversations, image_bytes, video_bytes=video_bytes)
        messages = valid.messages
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is None or last_user + 1 >= len(messages) or messages[last_user + 1]["role"] != "assistant":
            raise BadRow("no_reference", "no assistant reply follows the last user turn")
        prompt = messages[: last_user + 1]
        reference = strip_think(messages[last_user + 1]["content"])
        tok, spec = self.tokenizer, self.prompt
        shown = marker_count(prompt)
        grids = valid.grids[:shown] if valid.grids is not None else None
        prompt_ids = encode(
            tok,
            render_chat(
                tok,
                prompt,
                thinking=spec.thinking,
                tokens_per_image=spec.tokens_per_image,
                grids=grids,
                image_token=spec.image_token,
            ),
        )
        answer_ids = [*encode(tok, reference), tok.eos_token_id]
        room = len(prompt_ids) + max(len(answer_ids), spec.max_new_tokens)
        if room > spec.positions:
            raise BadRow(
                "too_long",
                f"the prompt ({len(prompt_ids)} tokens) with the answer or the new tokens exceeds the model's "
                f"{spec.positions} positions",
            )
        images = valid.images[:shown]
        return EvalItem(file, row, prompt, reference, images, prompt_ids, answer_ids)

    def items(self, files: list[str | Path], skips: Skips, limit: int | None = None) -> Iterator[EvalItem]:
        """The usable rows of `files` in order, at most `limit`; every other row is counted in `skips`."""
        produced = 0
        for file in files:
            for row, (conversations, image_bytes, video_bytes) in enumerate(iter_rows(file)):
                if limit is not None and produced >= limit:
                    return
                try:
                    yield self.item(str(file), row, conversations, image_bytes, video_bytes)
                    produced += 1
                except BadRow as exc:
                    skips.add(exc.kind, f"row {row} of {Path(file).name}", str(exc))
