"""The HTTP layer (Starlette): the OpenAI routes, the page, auth, body limits, streaming and disconnects.

Request handling never touches the model: the body is read under a size cap, checked (`protocol`), its images and
videos are decoded and checked and the prompt rendered in a worker thread (`image_input`, `video_input`, `prompt`),
and the engine thread takes it from there, sending events back through the event loop. A client that goes away
cancels its request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mmv.sampling import SamplingConfig
from mmv.serve.engine import Engine
from mmv.serve.image_input import CheckedImage, MediaPolicy, load_image
from mmv.serve.prompt import Prompt, PromptBuilder
from mmv.serve.protocol import ApiError, ChatRequest, VideoPart, parse_chat_request
from mmv.serve.responses import DONE, Completion, sse
from mmv.serve.sequence import Event, Failed, GenerationRequest, TextDelta
from mmv.serve.video_input import CheckedVideo, RecentVideos, load_video

STATIC = files("mmv.serve") / "static"
DISCONNECT_POLL_S = 0.5
# the page loads nothing from elsewhere; images and videos are shown from data: and blob: URLs
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; style-src 'self'; script-src 'self'"
)


@dataclass
class ServeSettings:
    model_name: str  # the id /v1/models lists and requests name
    model_aliases: tuple[str, ...] = ()  # other names accepted in `model` (the --model argument as given)
    api_key: str | None = None  # required as `Authorization: Bearer KEY` on /v1/* when set
    max_new_tokens_limit: int = 2048  # the largest max_tokens a request may ask for
    max_image_mb: float = 20.0  # one image, decoded
    max_video_mb: float = 40.0  # one video, decoded: base64 makes it 53 MB, within the default body limit
    max_body_mb: float = 64.0  # one request body (images travel base64-encoded inside it)
    allow_image_urls: bool = False  # fetch http(s) image and video URLs (off: only data: URIs)


class ClientGone(Exception):
    pass


class CancellingStream(StreamingResponse):
    """Server-sent events whose request is cancelled however the response ends: done, failed or disconnected."""

    def __init__(self, events: AsyncIterator[str], generation: GenerationRequest) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.generation = generation

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.cancelled.set()


class ChatApi:
    def __init__(self, engine: Engine, builder: PromptBuilder, settings: ServeSettings) -> None:
        self.engine, self.builder, self.settings = engine, builder, settings
        self.images = MediaPolicy(max_bytes=int(settings.max_image_mb * 2**20), allow_urls=settings.allow_image_urls)
        self.videos = MediaPolicy(max_bytes=int(settings.max_video_mb * 2**20), allow_urls=settings.allow_image_urls)
        self.recent_videos = RecentVideos()
        self.started = time.time()

    async def completions(self, request: Request) -> Response:
        try:
            self._authorize(request)
            with self.engine.announced():  # from the body's first byte: an idle engine waits for it (up to a cap)
                body = await self._read_json(request)
                names = (self.settings.model_name, *self.settings.model_aliases)
                limit = self.settings.max_new_tokens_limit
                parsed = parse_chat_request(body, model_names=names, max_tokens_limit=limit)
                prompt = await run_in_threadpool(self._prepare, parsed)
                generation, events = self._submit(parsed, prompt)
            first = await self._next(events, request, generation)
            if isinstance(first, Failed):
                raise first.error
        except ApiError as error:
            return error_response(error)
        except ClientGone:
            return Response(status_code=499)
        completion = Completion(self.settings.model_name)
        if parsed.stream:
            stream = self._stream(completion, first, events, parsed.include_usage)
            return CancellingStream(stream, generation)
        return await self._collect(completion, first, events, request, generation)

    def _authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise ApiError("a valid API key is required: Authorization: Bearer KEY", status=401, code="invalid_api_key")

    async def _read_json(self, request: Request) -> Any:
        limit = int(self.settings.max_body_mb * 2**20)
        too_large = ApiError(
            f"the request body is over this server's {self.settings.max_body_mb:g} MB limit",
            status=413,
            code="request_too_large",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None

    def _prepare(self, parsed: ChatRequest) -> Prompt:
        """Blocking work off the event loop: download/decode and check each image and video, render and tokenize."""
        media: list[CheckedImage | CheckedVideo] = []
        videos = images = 0  # each counted on its own: errors name "image 2", "video 1"
        for part in parsed.media:
            if isinstance(part, VideoPart):
                videos += 1
                media.append(load_video(part.url, self.videos, self.builder.loaded.frames, videos, self.recent_videos))
            else:
                images += 1
                media.append(load_image(part.url, self.images, f"image {images}"))
        return self.builder.build(parsed, media)

    def _submit(self, parsed: ChatRequest, prompt: Prompt) -> tuple[GenerationRequest, asyncio.Queue[Event]]:
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        sampling = SamplingConfig(
            max_new_tokens=prompt.max_new_tokens,
            temperature=parsed.temperature,
            top_k=parsed.top_k,
            top_p=parsed.top_p,
            repetition_penalty=parsed.repetition_penalty,
            seed=parsed.seed,
            stop_on_eos=not parsed.ignore_eos,
        )

        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the event loop has closed (the server stopped): nobody is listening any more
                generation.cancelled.set()

        generation = GenerationRequest(prompt, sampling, parsed.stop, emit=emit)
        self.engine.submit(generation)
        return generation, events

    async def _next(self, events: asyncio.Queue[Event], request: Request, generation: GenerationRequest) -> Event:
        """The next event; a client that disconnects while waiting cancels its request."""
        while True:
            try:
                return await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    generation.cancelled.set()
                    raise ClientGone from None

    async def _collect(
        self,
        completion: Completion,
        event: Event,
        events: asyncio.Queue[Event],
        request: Request,
        generation: GenerationRequest,
    ) -> Response:
        pieces = []
        try:
            while isinstance(event, TextDelta):
                pieces.append(event.text)
                event = await self._next(events, request, generation)
        except ClientGone:
            return Response(status_code=499)
        if isinstance(event, Failed):
            return error_response(event.error)
        return JSONResponse(completion.whole("".join(pieces), event))

    async def _stream(
        self,
        completion: Completion,
        event: Event,
        events: asyncio.Queue[Event],
        include_usage: bool,
    ) -> AsyncIterator[str]:
        yield completion.chunk({"role": "assistant", "content": ""}, with_usage=include_usage)
        while isinstance(event, TextDelta):
            if event.text:
                yield completion.chunk({"content": event.text}, with_usage=include_usage)
            event = await events.get()
        if isinstance(event, Failed):
            yield sse(event.error.body())
            return
        yield completion.chunk({}, finish_reason=event.reason, with_usage=include_usage)
        if include_usage:
            yield completion.usage_chunk(event)
        yield DONE

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except ApiError as error:
            return error_response(error)
        model = {"id": self.settings.model_name, "object": "model", "created": int(self.started), "owned_by": "mmv"}
        return JSONResponse({"object": "list", "data": [model]})

    async def health(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": self.settings.model_name,
                "decoding": self.engine.busy_rows,
                "api_key_required": self.settings.api_key is not None,
            }
        )


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def http_error(_request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return error_response(ApiError(getattr(exc, "detail", "error"), status=status, kind=kind))


async def page(_request: Request) -> Response:
    return FileResponse(str(STATIC / "index.html"), headers={"Content-Security-Policy": PAGE_POLICY})


def build_app(engine: Engine, loaded: Any, settings: ServeSettings) -> Starlette:
    """The ASGI app over a started engine and the loaded model it decodes."""
    builder = PromptBuilder(loaded, engine.tokenizer_lock, settings.max_new_tokens_limit)
    api = ChatApi(engine, builder, settings)
    routes = [
        Route("/", page),
        Route("/health", api.health),
        Route("/v1/models", api.models),
        Route("/v1/chat/completions", api.completions, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
