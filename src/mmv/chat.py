"""A multi-turn conversation about images: history, attached images, streaming replies and their timings.

Each turn re-renders the whole conversation; the projected features of every image are computed once and reused,
and a `PrefixCache` keeps the keys/values of what the previous turn ran through the model, so a turn prefills only
its new message (and whatever of the last reply re-tokenises differently).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmv.config import IMAGE_MARKER
from mmv.errors import MmvError
from mmv.generate import generate
from mmv.prefix_cache import PrefixCache
from mmv.sampling import SamplingConfig
from mmv.tokenizer import encode, render_chat

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from mmv.loading import LoadedModel
    from mmv.vision_input.tiles import TileGrid


@dataclass
class Reply:
    text: str
    new_tokens: int
    ttft_ms: float
    vision_ms: float
    decode_tokens_per_s: float
    stopped: str  # "eos", "length" or "cancelled"
    reused_tokens: int = 0  # history tokens whose keys/values were kept from the previous turn
    positions_full: bool = False  # stopped ("length") because the conversation filled the model's positions


@dataclass
class Turn:
    role: str
    content: str
    images: list[str] = field(default_factory=list)  # names of images attached to this turn


class TextStream:
    """Incremental detokenisation: yields only complete characters (a multi-byte char may span tokens)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.tokens, self.emitted = tokenizer, [], 0

    def push(self, token: int) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        # only a trailing U+FFFD may still become a character (its other bytes to come); the text before it is
        # final, bytes that can never be UTF-8 included, so a reply of such bytes streams instead of waiting
        if text.endswith("\ufffd"):
            text = text[:-1]
        new, self.emitted = text[self.emitted :], len(text)
        return new

    def text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)


def check_text(text: str, what: str = "the message") -> None:
    """Refuse text that is not Unicode: bytes that were not UTF-8 arrive as lone surrogates (Python's
    surrogateescape, for stdin and command-line arguments), which the tokenizer cannot take."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            code = ord(char)
            found = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate U+{code:04X}"
            raise MmvError(f"{what} is not UTF-8 text ({found} at character {index + 1}); nothing was sent")


def place_images(prompt: str, count: int) -> str:
    """`<image>` markers in the prompt place the images in order; without any, the images go first."""
    markers = prompt.count(IMAGE_MARKER)
    if markers == 0 and count:
        return "\n".join([IMAGE_MARKER] * count) + "\n" + prompt
    if markers != count:
        raise MmvError(f"the prompt has {markers} <image> marker(s) but {count} image(s) were given")
    return prompt


class ChatSession:
    def __init__(
        self, loaded: LoadedModel, sampling: SamplingConfig, system: str | None = None, thinking: bool = False
    ) -> None:
        if system is not None:
            check_text(system, "the system prompt")
        self.loaded, self.sampling, self.system, self.thinking = loaded, sampling, system, thinking
        self.turns: list[Turn] = []
        self.pending: list[tuple[str, Image.Image]] = []  # images attached to the next user turn
        self.image_embeds: list[torch.Tensor] = []  # one [run, hidden] per placeholder run of the conversation
        self.grids: list[TileGrid] = []  # each image's tiles, in order
        self.prefix = PrefixCache()

    def attach(self, name: str, image: Image.Image) -> None:
        if self.loaded.processor is None:
            raise MmvError("this model was loaded without a vision encoder; load one to use images", option="vision")
        self.pending.append((name, image))

    def clear(self) -> None:
        self.turns, self.pending, self.image_embeds, self.grids = [], [], [], []
        self.prefix.clear()

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": t.role, "content": t.content} for t in self.turns]

    def ask(self, prompt: str, on_text: Callable[[str], bool | None] | None = None) -> Reply:
        """Add a user turn (with the pending images), generate and stream the reply, add it to the history.

        A conversation longer than the model's positions is refused before anything runs; a reply that would
        run past them stops there (`stopped` "length", `positions_full`)."""
        import torch

        check_text(prompt)
        content = place_images(prompt, len(self.pending))
        new_grids = self.loaded.tiling.grids([image for _, image in self.pending])
        text = render_chat(
            self.loaded.tokenizer,
            [*self.messages(), {"role": "user", "content": content}],
            thinking=self.thinking,
            tokens_per_image=self.loaded.model.config.image_token_len,
            grids=self.grids + new_grids,
            image_token=self.loaded.model.config.image_special_token,
        )
        ids = encode(self.loaded.tokenizer, text)
        sampling, positions_full = self._fit_positions(len(ids))
        start = time.perf_counter()
        new_embeds = self._encode_pending()
        vision_ms = (time.perf_counter() - start) * 1000
        user = Turn("user", content, [name for name, _ in self.pending])
        stream = TextStream(self.loaded.tokenizer)

        def on_token(_row: int, token: int) -> bool | None:
            piece = stream.push(token)
            return on_text(piece) if (piece and on_text) else None

        embeds = torch.stack(self.image_embeds + new_embeds) if self.image_embeds or new_embeds else None
        result = generate(
            self.loaded.model,
            [ids],
            sampling,
            image_embeds=embeds,
            on_token=on_token,
            prefix=self.prefix,
        )
        self.image_embeds += new_embeds
        self.grids += new_grids
        self.pending = []
        reply = stream.text()
        self.turns += [user, Turn("assistant", reply)]
        return Reply(
            text=reply,
            new_tokens=len(result.tokens[0]),
            ttft_ms=result.ttft_ms + vision_ms,
            vision_ms=vision_ms,
            decode_tokens_per_s=result.decode_tokens_per_s,
            stopped=result.stopped[0],
            reused_tokens=result.reused_tokens,
            positions_full=positions_full and result.stopped[0] == "length",
        )

    def _fit_positions(self, length: int) -> tuple[SamplingConfig, bool]:
        """The sampling settings for a prompt of `length` tokens, the reply budget cut to the positions left."""
        positions = self.loaded.model.config.max_position_embeddings
        room = positions - length
        if room < 1:
            raise MmvError(
                f"the conversation is {length} tokens but the model has {positions} positions "
                "(max_position_embeddings); nothing was sent: shorten the message or start a new conversation"
            )
        if room >= self.sampling.max_new_tokens:
            return self.sampling, False
        return dataclasses.replace(self.sampling, max_new_tokens=room), True

    def _encode_pending(self) -> list[torch.Tensor]:
        import torch

        from mmv.model.vision import encoder_inputs_to

        if not self.pending:
            return []
        model = self.loaded.model
        inputs = self.loaded.processor(self.loaded.tiling.all_views([image for _, image in self.pending]))
        inputs = encoder_inputs_to(inputs, model.rope_cos.device, model.model.embed_tokens.weight.dtype)
        with torch.inference_mode():
            return list(model.encode_images(inputs))

    def transcript(self) -> dict[str, Any]:
        return {
            "model": str(self.loaded.weights),
            "system": self.system,
            "thinking": self.thinking,
            "turns": [{"role": t.role, "content": t.content, "images": t.images} for t in self.turns],
        }
