"""Continuous batching: one thread owns the model, and requests join and leave its batch between decode steps.

Each iteration the engine lets go of rows whose client left, admits the waiting requests up to `max_batch`
together (their new images in one encoder call, their prompts in shared left-padded prefills; one that resumes a
conversation from the `PrefixPool` is prefilled alone from where its history ends: `admission`), streams each
one's first token at once, lays the rows out as one left-padded batch again when they changed (`regroup`), and runs
one decode step for all. A row's tokens are what its request would get alone: padding is masked and positions count
real tokens only. A finished request leaves its keys/values in the pool for the conversation's next turn. An idle
engine waits for the requests sent with an arrival: those the HTTP layer is still preparing (`Engine.announced`),
and those a few milliseconds behind it (`EngineSettings.gather_s`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from mmv.console import say
from mmv.decoding import Decoding, regroup
from mmv.model.kv_cache import KVCache
from mmv.model.packed import pack_linears
from mmv.prefix_cache import PrefixCache
from mmv.sampling import TokenSampler
from mmv.serve.admission import Joining, batches, prefill_batch
from mmv.serve.image_features import ImageFeatures
from mmv.serve.prefix_pool import PrefixPool
from mmv.serve.protocol import ApiError
from mmv.serve.sequence import Failed, GenerationRequest, Sequence

if TYPE_CHECKING:
    from mmv.model.vlm import MiniMindVLM

T = TypeVar("T")


@dataclass
class EngineSettings:
    max_batch: int = 8  # rows decoded together; more requests wait for a free row
    prefix_pool: int = 16  # finished conversations whose keys/values are kept for their next turn
    image_cache: int = 64  # distinct images whose projected features are kept
    grow: int = 128  # tokens of room added per row when the batch's cache fills up
    # an idle engine admits a request once no other has arrived for this long and none is being prepared, waiting
    # gather_cap_s at most: calls sent together reach the engine milliseconds apart (each decodes its images on
    # the way), and the first alone would make the rest wait for its prefill
    gather_s: float = 0.02
    gather_cap_s: float = 0.25
    # float32 projections also held in oneDNN's layout (mmv.model.packed): one more copy of the language model's
    # weights in memory, batched decode steps and prefills faster
    pack_weights: bool = True


@dataclass
class EngineStats:
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    prefills: int = 0  # forwards that admitted requests (requests that join together share one)


def shutting_down() -> ApiError:
    return ApiError("the server is shutting down", status=503, kind="server_error", code="shutting_down")


class Engine:
    """Owns the model on its own thread; `submit` from any thread, replies come back through each request's `emit`."""

    def __init__(
        self, model: MiniMindVLM, tokenizer: Any, tokenizer_lock: threading.Lock, settings: EngineSettings
    ) -> None:
        self.model, self.tokenizer, self.tokenizer_lock, self.settings = model, tokenizer, tokenizer_lock, settings
        if settings.pack_weights:
            pack_linears(model)
        config = model.config
        self.images = ImageFeatures(model, settings.image_cache)
        self.prefixes = PrefixPool(settings.prefix_pool, config.image_token_id, config.image_token_len)
        self.waiting: deque[GenerationRequest] = deque()
        self.preparing = 0  # requests announced and not yet submitted
        self.wakeup = threading.Condition()
        self.rows: list[Sequence] = []
        self.batch: Decoding | None = None
        self.closing_at: float | None = None  # past this instant, rows still decoding are cancelled
        self.stats = EngineStats()
        self.thread = threading.Thread(target=self._run, name="mmv-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, request: GenerationRequest) -> None:
        with self.wakeup:
            if self.closing_at is not None:
                raise shutting_down()
            self.waiting.append(request)
            self.wakeup.notify()

    @contextlib.contextmanager
    def announced(self) -> Iterator[None]:
        """Around a request's preparation (its images decoded, its prompt rendered) and its `submit`: an idle engine
        gathering the requests sent together waits for it."""
        with self.wakeup:
            self.preparing += 1
        try:
            yield
        finally:
            with self.wakeup:
                self.preparing -= 1
                self.wakeup.notify()

    def close(self, grace_s: float) -> None:
        """Take no more requests; let running ones finish for up to `grace_s`, then cancel them."""
        with self.wakeup:
            if self.closing_at is None:
                self.closing_at = time.monotonic() + grace_s
            self.wakeup.notify()

    def join(self, timeout_s: float) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    @property
    def busy_rows(self) -> int:
        return len(self.rows)

    def _run(self) -> None:
        with torch.inference_mode():
            while (joining := self._next_requests()) is not None:
                self._guarded(self._iterate, joining)

    def _iterate(self, joining: list[GenerationRequest]) -> None:
        self._drop_cancelled()
        new_rows = self._admit(joining) if joining else []
        if new_rows or self._stale():
            self._relayout(new_rows)
        if self.rows:
            self._step()

    def _next_requests(self) -> list[GenerationRequest] | None:
        """Wait for work; return the requests to admit now, or None once closed with nothing left to do."""
        with self.wakeup:
            while not self.waiting and not self.rows and self.closing_at is None:
                self.wakeup.wait()
            if self.closing_at is not None:
                for request in self.waiting:
                    request.emit(Failed(shutting_down()))
                self.waiting.clear()
                if time.monotonic() > self.closing_at:
                    for row in self.rows:
                        row.fail(shutting_down())
                if not any(row.reason is None for row in self.rows):
                    return None
            if not self.rows and self.closing_at is None:
                self._gather()
            free = self.settings.max_batch - len(self.rows)
            return [self.waiting.popleft() for _ in range(min(free, len(self.waiting)))]

    def _gather(self) -> None:
        """Hold `wakeup` (waiting releases it) while requests are being prepared or keep arriving `gather_s` apart,
        until the batch is full or `gather_cap_s` has passed.

        Measured with 8 clients sending at once (benchmarks/serve.py): without it the engine admitted the first one
        or two, and the others, ready a few milliseconds later, waited for that prefill before their own; with
        arrivals alone, decoding eight images on two cores spread the last ones 40 ms apart."""
        deadline = time.monotonic() + self.settings.gather_cap_s
        while len(self.waiting) < self.settings.max_batch and self.closing_at is None:
            seen, left = len(self.waiting), deadline - time.monotonic()
            if left <= 0:
                return
            if self.preparing:
                self.wakeup.wait(left)
            elif not self.wakeup.wait(min(self.settings.gather_s, left)) or len(self.waiting) == seen:
                return

    def _drop_cancelled(self) -> None:
        for row in self.rows:
            if row.reason is None and row.request.cancelled.is_set():
                row.reason = "cancelled"
        self._retire_finished()

    def _admit(self, requests: list[GenerationRequest]) -> list[Sequence]:
        """Prefill the joining requests and choose their first tokens; the rows that go on decoding.

        Their new images go through the encoder in one call and their prompts share prefills (`admission`); where
        a shared call fails, its requests are retried one by one, so that only the one at fault fails."""
        joining = [Joining(request) for request in requests if not request.cancelled.is_set()]
        encoded = [j for group, _ in self._each_or_alone(joining, self._encode) for j in group]
        for j in encoded:
            # a prefix prefills its request alone: among others, only one that saves most of the prompt pays
            j.prefix = self.prefixes.take(j.tokens, j.embeds, len(j.tokens) // 2 if len(encoded) > 1 else 1)
        rows = []
        for batch in batches(encoded):
            for done, decoding in self._each_or_alone(batch, partial(prefill_batch, self.model)):
                self.stats.prefills += 1
                rows += [row for index, j in enumerate(done) if (row := self._start(j, decoding, index))]
        return rows

    def _encode(self, joining: list[Joining]) -> None:
        for j, embeds in zip(joining, self.images.embeds([j.request.prompt.images for j in joining]), strict=True):
            j.embeds = embeds

    def _each_or_alone(self, group: list[Joining], work: Callable[[list[Joining]], T]) -> list[tuple[list[Joining], T]]:
        """[(group, work(group))]; where that fails, the same for each request alone, failing the ones that fail."""
        try:
            return [(group, work(group))]
        except Exception as exc:
            if len(group) > 1:
                return [done for j in group for done in self._each_or_alone([j], work)]
            self._reject(group[0].request, exc)
            return []

    def _start(self, joining: Joining, decoding: Decoding, index: int) -> Sequence | None:
        """Row `index` of a prefill's `decoding`, its first token chosen; None if it failed or is already done."""
        request = joining.request
        try:
            tokens = torch.tensor([joining.tokens], device=decoding.ids.device)
            sampler = TokenSampler(request.sampling, tokens, torch.ones_like(tokens), self.model.config.vocab_size)
            row = Sequence(
                request,
                sampler,
                self.tokenizer,
                self.tokenizer_lock,
                self.model.config.eos_token_id,
                joining.embeds,
                decoding.reused,
            )
            row.home = (decoding, index)
            self._count(row)
            row.accept(decoding.logits[index : index + 1])
        except Exception as exc:  # one bad request must not stop the engine
            self._reject(request, exc)
            return None
        if row.reason is not None:
            self._remember(row)
            return None
        return row

    def _reject(self, request: GenerationRequest, exc: Exception) -> None:
        say(traceback.format_exc())
        request.emit(Failed(ApiError(f"internal error: {exc}", status=500, kind="server_error")))

    def _count(self, row: Sequence) -> None:
        self.stats.requests += 1
        self.stats.prompt_tokens += len(row.tokens)
        self.stats.cached_tokens += row.reused

    def _stale(self) -> bool:
        """Rows left since the last layout (rows are only ever removed from it), or its cache is full."""
        if self.batch is None:
            return bool(self.rows)
        return self.batch.ids.shape[0] != len(self.rows) or self.batch.cache.length >= self.batch.cache.max_len

    def _relayout(self, new_rows: list[Sequence]) -> None:
        """One batch over the running rows and the new ones, compacted, with room to grow."""
        self.rows += new_rows
        if not self.rows:
            self.batch = None
            return
        room = min(max(row.remaining for row in self.rows), self.settings.grow)
        self.batch = regroup(self.model, [(*row.home, row.tokens) for row in self.rows], room)
        for index, row in enumerate(self.rows):
            row.home = (self.batch, index)

    def _step(self) -> None:
        fed = torch.tensor([row.feed() for row in self.rows], device=self.batch.ids.device)
        logits = self.batch.step(fed)
        for index, row in enumerate(self.rows):
            row.accept(logits[index : index + 1])
        self._retire_finished()

    def _retire_finished(self) -> None:
        for row in self.rows:
            if row.reason is not None:
                self.stats.completion_tokens += row.generated
                self._remember(row)
        self.rows = [row for row in self.rows if row.reason is None]

    def _remember(self, row: Sequence) -> None:
        """Keep the request's keys/values for its conversation's next turn."""
        decoding, index = row.home
        count = len(row.tokens)
        cache = KVCache.gather([(decoding.cache, index, count)], count, count)
        self.prefixes.store(PrefixCache(cache=cache, tokens=list(row.tokens), image_embeds=row.image_embeds))

    def _guarded(self, work: Callable[..., None], *args: object) -> None:
        """A failing step fails the requests in the batch, not the server."""
        try:
            work(*args)
        except Exception as exc:
            say(traceback.format_exc())
            for row in self.rows:
                if row.reason is None:
                    row.fail(ApiError(f"internal error: {exc}", status=500, kind="server_error"))
            self.rows, self.batch = [], None
