"""One request's side of the batch: its tokens, its sampler, its text as it streams, and why it ends.

The engine feeds each chosen token to `Sequence.accept`, which turns it into text (whole characters only), holds
back what could be the start of a stop string, and decides whether the request is done: eos or a stop string
("stop"), the token budget ("length"), or a client that went away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmv.chat import TextStream
from mmv.serve.protocol import ApiError

if TYPE_CHECKING:
    import torch

    from mmv.decoding import Decoding
    from mmv.sampling import SamplingConfig, TokenSampler
    from mmv.serve.prompt import Prompt


@dataclass
class TextDelta:
    text: str


@dataclass
class Finished:
    reason: str  # "stop" (eos or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose keys/values were kept from an earlier request


@dataclass
class Failed:
    error: ApiError


Event = TextDelta | Finished | Failed


@dataclass
class GenerationRequest:
    prompt: Prompt
    sampling: SamplingConfig  # max_new_tokens is the prompt's budget
    stop: list[str]
    emit: Callable[[Event], None]  # called on the engine thread; must not block
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client goes away


class StopMatcher:
    """Finds stop strings in streamed text, holding back any tail that may be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.held = stops, ""

    def push(self, piece: str) -> tuple[str, bool]:
        """Return (text safe to send now, whether a stop string ended the reply)."""
        text = self.held + piece
        hits = [index for index in (text.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.held = ""
            return text[: min(hits)], True
        keep = max((n for stop in self.stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class Sequence:
    def __init__(
        self,
        request: GenerationRequest,
        sampler: TokenSampler,
        tokenizer: Any,
        lock: threading.Lock,
        eos: int,
        image_embeds: torch.Tensor | None,
        reused: int,
    ) -> None:
        self.request, self.sampler, self.lock, self.eos = request, sampler, lock, eos
        self.image_embeds, self.reused = image_embeds, reused
        self.tokens = list(request.prompt.tokens)  # the ids whose keys/values the cache holds, in order
        self.generated = 0
        self.pending: int | None = None  # chosen, not yet fed through the model
        self.reason: str | None = None  # set once the request is done
        self.home: tuple[Decoding, int] | None = None  # where its cache row lives: (decoding, row)
        self.stream = TextStream(tokenizer)
        self.stops = StopMatcher(request.stop)

    @property
    def remaining(self) -> int:
        return self.request.sampling.max_new_tokens - self.generated

    def accept(self, logits: torch.Tensor) -> None:
        """Choose the next token from this row's logits ([1, V]), stream its text, and see whether it ends here."""
        token = int(self.sampler.choose(logits)[0])
        if self.request.sampling.stop_on_eos and token == self.eos:
            self._finish("stop")
            return
        self.generated += 1
        with self.lock:
            piece = self.stream.push(token)
        text, stopped = self.stops.push(piece)
        if text or self.generated == 1:
            # the first token always: a streamed reply starts (its role chunk goes out) with its first token, not
            # with its first whole character, which a byte-level token or a held-back stop string can delay
            self.request.emit(TextDelta(text))
        if stopped:
            self._finish("stop")
        elif self.remaining <= 0:
            self._finish("length")
        else:
            self.pending = token

    def feed(self) -> int:
        """The pending token, now going through the model: from here on its keys/values are in the cache."""
        token = self.pending
        self.tokens.append(token)
        self.pending = None
        return token

    def _finish(self, reason: str) -> None:
        held = self.stops.flush() if reason == "length" else ""
        if held:
            self.request.emit(TextDelta(held))
        self.reason = reason
        prompt = len(self.request.prompt.tokens)
        self.request.emit(Finished(reason, prompt, self.generated, self.reused))

    def fail(self, error: ApiError) -> None:
        self.reason = "failed"
        self.request.emit(Failed(error))
