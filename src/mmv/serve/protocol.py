"""The OpenAI chat-completions request: read, checked field by field, refused in the OpenAI error shape.

Accepted: `model`, `messages` (content a string or a list of `text` / `image_url` / `video_url` parts; pictures and
videos in user messages only), `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`, `seed`, `stop`,
`stream`, `stream_options.include_usage`, `n` (1 only), and four extensions: `thinking` (open MiniMind's `<think>`
block), `top_k`, `repetition_penalty` and `ignore_eos` (decode the full `max_tokens`: for benchmarks).
`IGNORED_FIELDS` are accepted and have no effect. Tools, `n > 1`, a structured `response_format` and audio are
refused with a 400, as is a model name the server does not serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IGNORED_FIELDS = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "reasoning_effort",
    "prediction",
    "safety_identifier",
    "prompt_cache_key",
)
REFUSED_FIELDS = {
    "tools": "tools are not supported",
    "functions": "function calling is not supported",
    "audio": "audio output is not supported",
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOPS = 4


class ApiError(Exception):
    """A refused request: HTTP status and the OpenAI error object."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.kind, self.code, self.param = message, status, kind, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ImagePart:
    url: str


@dataclass
class VideoPart:
    url: str  # `{"type": "video_url", "video_url": {"url": ...}}`, the part vLLM and SGLang take for a video


@dataclass
class Message:
    role: str  # system, user or assistant
    parts: list[str | ImagePart | VideoPart]  # text, images and videos in the order they were written


@dataclass
class ChatRequest:
    messages: list[Message]
    max_tokens: int | None = None  # None: as many as the server's limit and the context allow
    temperature: float = 1.0  # OpenAI's default; 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # extension: 0 = no top-k cut
    repetition_penalty: float = 1.0  # extension: the reference's sign-aware penalty
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    thinking: bool = False  # extension: open the <think> block (MiniMind's `open_thinking`)
    ignore_eos: bool = False  # extension: keep decoding past eos up to max_tokens (benchmarks)

    @property
    def media(self) -> list[ImagePart | VideoPart]:
        """The images and videos of the conversation in order."""
        return [part for message in self.messages for part in message.parts if not isinstance(part, str)]


MEDIA_PARTS = {"image_url": ImagePart, "video_url": VideoPart}


def parse_chat_request(body: Any, *, model_names: tuple[str, ...], max_tokens_limit: int) -> ChatRequest:
    """Check a decoded JSON body; the first problem found is raised as an ApiError naming the field."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    _refuse_unsupported(body)
    model = body.get("model")
    if model is not None and model not in model_names:
        raise ApiError(
            f"model {model!r} is not served here; this server serves {model_names[0]!r}",
            code="model_not_found",
            param="model",
        )
    request = ChatRequest(messages=_messages(body.get("messages")))
    request.max_tokens = _max_tokens(body, max_tokens_limit)
    request.temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    request.top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    request.top_k = int(_number(body, "top_k", 0, 0, None, integer=True))
    request.repetition_penalty = _number(body, "repetition_penalty", 1.0, 0.01, 10.0)
    seed = body.get("seed")
    request.seed = None if seed is None else int(_number(body, "seed", 0, None, None, integer=True))
    request.stop = _stops(body.get("stop"))
    request.stream = _flag(body, "stream")
    request.thinking = _flag(body, "thinking")
    request.ignore_eos = _flag(body, "ignore_eos")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ApiError("stream_options must be an object", param="stream_options")
        request.include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    return request


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, reason in REFUSED_FIELDS.items():
        if body.get(name):
            raise ApiError(f"{reason} by this server", param=name, code="unsupported_parameter")
    if body.get("tool_choice") not in (None, "none") or body.get("function_call") not in (None, "none"):
        raise ApiError("tool calls are not supported by this server", param="tool_choice", code="unsupported_parameter")
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(f"n must be 1 (one choice per request), not {n!r}", param="n", code="unsupported_parameter")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise ApiError(
            "only the text response_format is supported", param="response_format", code="unsupported_parameter"
        )
    if body.get("modalities") not in (None, ["text"]):
        raise ApiError("only text output is supported", param="modalities", code="unsupported_parameter")


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise ApiError("messages must be a non-empty list", param="messages")
    messages = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise ApiError(f"{where} must be an object", param=where)
        role = item.get("role")
        if role not in ROLES:
            raise ApiError(f"{where}.role must be one of {', '.join(ROLES)}, not {role!r}", param=f"{where}.role")
        parts = _parts(item.get("content"), f"{where}.content", images_allowed=role == "user")
        messages.append(Message(ROLES[role], parts))
    if messages[-1].role != "user":
        raise ApiError("the last message must be the user's", param=f"messages[{len(raw) - 1}].role")
    return messages


def _parts(content: Any, where: str, *, images_allowed: bool) -> list[str | ImagePart | VideoPart]:
    if isinstance(content, str):
        return [_text(content, where)]
    if not isinstance(content, list) or not content:
        raise ApiError(f"{where} must be a string or a non-empty list of parts", param=where)
    parts: list[str | ImagePart | VideoPart] = []
    for index, part in enumerate(content):
        here = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(_text(part["text"], here))
        elif kind in MEDIA_PARTS and images_allowed:
            media = part.get(kind)
            url = media.get("url") if isinstance(media, dict) else media
            if not isinstance(url, str) or not url:
                raise ApiError(f"{here}.{kind}.url must be a string", param=f"{here}.{kind}")
            parts.append(MEDIA_PARTS[kind](url))
        elif kind in MEDIA_PARTS:
            raise ApiError(f"{here}: only user messages may hold {kind.split('_')[0]}s", param=here)
        else:
            raise ApiError(f"{here} must be a text, image_url or video_url part, not {kind!r}", param=here)
    return parts


def _text(text: str, where: str) -> str:
    from mmv.config import IMAGE_MARKER, IMAGE_TOKEN

    for marker in (IMAGE_MARKER, IMAGE_TOKEN):
        if marker in text:
            raise ApiError(f"{where} contains {marker!r}; send images as image_url parts", param=where)
    return text


def _max_tokens(body: dict[str, Any], limit: int) -> int | None:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if body.get(name) is None:
        return None
    value = int(_number(body, name, 0, 1, None, integer=True))
    if value > limit:
        raise ApiError(f"{name} {value} is over this server's limit of {limit}", param=name)
    return value


def _number(
    body: dict[str, Any], name: str, default: float, low: float | None, high: float | None, *, integer: bool = False
) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ApiError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ApiError(f"{name} must be {bounds}, not {value!r}", param=name)
    return value


def _stops(raw: Any) -> list[str]:
    stops = [raw] if isinstance(raw, str) else raw
    if stops is None:
        return []
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(f"stop must be a string or a list of at most {MAX_STOPS} non-empty strings", param="stop")
    return stops


def _flag(body: dict[str, Any], name: str, param: str | None = None) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(f"{param or name} must be true or false, not {value!r}", param=param or name)
    return value
