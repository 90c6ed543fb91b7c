"""Tokenisation and training labels exactly as the reference builds them (REFERENCE.md sections 4-5).

The reference renders the conversation with the chat template, removes every empty think block from the rendered
text (one `str.replace`, so all assistant turns at once), tokenises the whole text, keeps the first `max_length`
tokens and supervises every span from just after `<|im_start|>assistant\\n` through the closing `<|im_end|>\\n`,
searching the truncated ids (an assistant turn cut by truncation is supervised up to the cut). Its two random steps
(a system prompt added with p=0.2 unless the row uses tools, the empty think block dropped with p=0.8) are decided
by `Preprocessing`. Where mmv differs, it refuses rather than truncates: a sample whose image run would be cut, or
that keeps no supervised token, is dropped as too long (the reference trains on a broken or empty sample).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_TOKEN
from mmv.data.rows import BadRow
from mmv.model.loss import IGNORE_INDEX
from mmv.tokenizer import encode, expand_image_markers

if TYPE_CHECKING:
    from collections.abc import Iterator

    from transformers import PreTrainedTokenizerFast

    from mmv.vision_input.tiles import TileGrid

EMPTY_THINK = "<think>\n\n</think>\n\n"
# The reference's pool of system prompts, added to conversations that have none.
SYSTEM_PROMPTS = (
    "你是一个知识丰富的AI，尽力为用户提供准确的信息。",
    "你是minimind，一个小巧但有用的语言模型。",
    "你是一个专业的AI助手，请提供有价值的回答。",
    "你是minimind，请尽力帮助用户解决问题。",
    "你是一个可靠的AI，请给出准确的回答。",
    "You are a helpful AI assistant.",
    "You are minimind, a lightweight intelligent assistant.",
    "You are a friendly chatbot. Please answer the user's questions carefully.",
    "You are a knowledgeable AI. Try your best to provide accurate information.",
    "You are minimind, a small but useful language model.",
)


@dataclass(frozen=True)
class Preprocessing:
    system_prompt_p: float = 0.2  # chance of prepending a random system prompt when the row has none
    drop_empty_think_p: float = 0.8  # chance of removing the empty think blocks from the rendered text

    @classmethod
    def from_flags(cls, random_system_prompt: bool, drop_empty_think: bool) -> Preprocessing:
        return cls(0.2 if random_system_prompt else 0.0, 0.8 if drop_empty_think else 0.0)

    def choose(self, seed: int, epoch: int, row: int, messages: list[dict[str, Any]]) -> tuple[str | None, bool]:
        """(system prompt to prepend or None, whether to drop empty think blocks) for one row of one epoch.

        Seeded by (seed, epoch, row) alone, so the choice does not depend on the rank, worker or batch size."""
        rng = random.Random(f"{seed}:{epoch}:{row}")  # str seeds hash with sha512: stable across processes
        system = None
        tool_use = any(turn.get("tools") for turn in messages)  # the reference leaves tool-use rows as they are
        if not tool_use and messages[0].get("role") != "system" and rng.random() < self.system_prompt_p:
            system = rng.choice(SYSTEM_PROMPTS)
        return system, rng.random() < self.drop_empty_think_p


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]
    num_images: int
    length: int  # tokens of the whole rendered conversation, before the cut at max_seq_len


class LabelBuilder:
    """Messages -> (input_ids, labels) with the reference's truncation; image runs are never cut."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        max_seq_len: int,
        tokens_per_image: int = 64,
        image_token: str = IMAGE_TOKEN,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.tokens_per_image = tokens_per_image
        self.image_token = image_token
        self.image_id = tokenizer.convert_tokens_to_ids(image_token)
        self.start = encode(tokenizer, f"{tokenizer.bos_token}assistant\n")
        self.end = encode(tokenizer, f"{tokenizer.eos_token}\n")

    def render(
        self,
        messages: list[dict[str, Any]],
        system_prompt: str | None = None,
        drop_empty_think: bool = False,
        grids: list[TileGrid] | None = None,
    ) -> str:
        """The reference's prompt: only role and content of each turn reach the template, `<image>` expands in every
        turn but a system one (into the layout of its image's tile grid, `grids` in marker order), and a first
        system turn's `functions` become the template's tools."""
        if system_prompt is not None:
            messages = [{"role": "system", "content": system_prompt}, *messages]
        remaining: Iterator[TileGrid] | None = iter(grids) if grids is not None else None
        turns = [
            {
                "role": m["role"],
                "content": m.get("content", "")
                if m["role"] == "system"
                else expand_image_markers(
                    m.get("content", ""), self.tokens_per_image, grids=remaining, image_token=self.image_token
                ),
            }
            for m in messages
        ]
        tools = messages[0].get("functions") if messages[0]["role"] == "system" else None
        text = self.tokenizer.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=False, tools=tools or None
        )
        return text.replace(EMPTY_THINK, "") if drop_empty_think else text

    def build(
        self,
        messages: list[dict[str, Any]],
        num_images: int,
        system_prompt: str | None = None,
        drop_empty_think: bool = False,
        grids: list[TileGrid] | None = None,
    ) -> Sample:
        """`messages` as `mmv.data.rows.parse_row` returns them, `grids` each image's tiles (None: one run each).
        Raises BadRow("markers") when the rendered text does not hold the placeholder runs of its images, and
        BadRow("too_long") when an image run would not fit or nothing supervised is left."""
        ids = encode(self.tokenizer, self.render(messages, system_prompt, drop_empty_think, grids))
        length = len(ids)
        runs = num_images if grids is None else sum(grid.runs for grid in grids)
        # rows.check_markers refuses the known causes (a marker in a system turn, the placeholder typed as text);
        # this is the rendered truth, whatever the template does with the turns
        if ids.count(self.image_id) != runs * self.tokens_per_image:
            raise BadRow(
                "markers",
                f"{ids.count(self.image_id) // self.tokens_per_image} image placeholder run(s) "
                f"for {num_images} image(s)" + (f" ({runs} runs with their tiles)" if runs != num_images else ""),
            )
        if num_images and len(ids) > self.max_seq_len and self.image_id in ids[self.max_seq_len :]:
            raise BadRow("too_long", f"its image placeholders end beyond max_seq_len {self.max_seq_len}")
        ids = ids[: self.max_seq_len]
        labels = self.labels(ids)
        if all(label == IGNORE_INDEX for label in labels):
            raise BadRow("too_long", f"no assistant token falls within max_seq_len {self.max_seq_len}")
        return Sample(ids, labels, num_images, length)

    def labels(self, ids: list[int]) -> list[int]:
        """The reference's span search: after each `<|im_start|>assistant\\n`, up to and including the next
        `<|im_end|>\\n` (or the end of the ids when truncation cut it off)."""
        labels = [IGNORE_INDEX] * len(ids)
        start, end = self.start, self.end
        i = 0
        while i < len(ids):
            if ids[i : i + len(start)] != start:
                i += 1
                continue
            first = i + len(start)
            stop = find(ids, end, first)
            last = len(ids) if stop < 0 else min(stop + len(end), len(ids))
            labels[first:last] = ids[first:last]
            i = last
        return labels


def find(ids: list[int], pattern: list[int], begin: int) -> int:
    """Index of the first occurrence of `pattern` in `ids` at or after `begin`, or -1."""
    head = pattern[0]
    i = begin
    while True:
        try:
            i = ids.index(head, i)
        except ValueError:
            return -1
        if ids[i : i + len(pattern)] == pattern:
            return i
        i += 1
