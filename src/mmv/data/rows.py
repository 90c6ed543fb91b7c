"""One parquet row of the published schema -> messages and image bytes, or `BadRow` saying why not (REFERENCE.md 5).

`conversations` is a JSON string or an already-decoded list of {role, content}; `image_bytes` is one binary or a
list of binaries (the k-th `<image>` marker is the k-th image). A row with `video_bytes` holds one video and no
images: its one `<image>` marker is where the video's sampled frames go. The checks here need no tokenizer;
`mmv.data.validate` adds the ones that do (the rendered placeholder runs, the length) and decodes the images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mmv.config import IMAGE_MARKER, IMAGE_TOKEN

# What a row can be refused for, in the order the checks run: the first failing check names the row's kind.
KINDS = ("json", "unicode", "schema", "markers", "image", "too_long")
BAD_KINDS = KINDS[:-1]  # broken data; too_long is a length filter (an image run would be cut, or no answer is left)
ROLES = ("system", "user", "assistant", "tool")  # the roles the chat template renders (others it drops silently)
IMAGE_ROLES = ("user", "assistant", "tool")  # turns whose `<image>` markers become image runs (not system turns)
MAX_DEPTH = 32  # nesting of a conversation (turns, tool schemas): real rows stay far below; the template recurses


class BadRow(ValueError):
    """A row that cannot be used; `kind` is one of KINDS (or a caller's own, such as eval's no_reference)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def decode_json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRow("unicode", f"conversations is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except RecursionError:
        raise BadRow("json", f"conversations is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRow("json", f"conversations is not valid JSON ({exc})") from None


def strings(value: Any) -> Iterator[str]:
    """Every string of a decoded JSON value, keys included; refuses nesting deeper than MAX_DEPTH."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRow("json", f"conversations is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    yield key
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRow(
            "unicode", f"the text holds a lone surrogate {text[exc.start]!r}, which is not valid Unicode"
        ) from None


def check_turn(index: int, turn: Any) -> dict[str, Any]:
    where = f"turn {index + 1}"
    if not isinstance(turn, dict):
        raise BadRow("schema", f"{where} is {type(turn).__name__}; each turn needs a role and string content")
    role = turn.get("role")
    if role not in ROLES:
        raise BadRow("schema", f"{where} has role {role!r}; expected one of {', '.join(ROLES)}")
    if not isinstance(turn.get("content"), str):
        found = "no content" if "content" not in turn else f"content of type {type(turn['content']).__name__}"
        raise BadRow("schema", f"{where} ({role}) has {found}; expected string content")
    for key in ("tool_calls", "functions"):
        calls = turn.get(key)
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
            raise BadRow("schema", f"{where} ({role}) has {key} of type {type(calls).__name__}; expected a list")
    return dict(turn)


def check_turns(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise BadRow("schema", "conversations must be a non-empty list of {role, content}")
    messages = [check_turn(index, turn) for index, turn in enumerate(value)]
    if not any(turn["role"] == "assistant" for turn in messages):
        raise BadRow("schema", "the conversation has no assistant turn")
    return messages


def marker_count(messages: list[dict[str, Any]]) -> int:
    return sum(turn["content"].count(IMAGE_MARKER) for turn in messages)


def check_markers(messages: list[dict[str, Any]], text: str, num_images: int) -> int:
    """The number of `<image>` markers; each needs an image and must sit where training expands it. `text` is every
    string of the row, joined."""
    if IMAGE_TOKEN in text:
        raise BadRow("markers", f"the text holds the placeholder token {IMAGE_TOKEN} itself; mark images with <image>")
    markers = marker_count([turn for turn in messages if turn["role"] in IMAGE_ROLES])
    if text.count(IMAGE_MARKER) != markers:
        raise BadRow("markers", "an <image> marker outside the content of a user, assistant or tool turn")
    if markers and markers != num_images:
        raise BadRow("markers", f"{markers} <image> marker(s) but {num_images} image(s)")
    return markers


def check_conversation(value: Any, num_images: int) -> tuple[list[dict[str, Any]], int]:
    """Decoded conversations -> (messages, number of `<image>` markers), or BadRow: unicode, json (nesting),
    schema, markers, in that order."""
    text = "\0".join(strings(value))  # a separator no marker can span
    check_unicode(text)
    messages = check_turns(value)
    return messages, check_markers(messages, text, num_images)


def parse_image_bytes(value: Any) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [bytes(value)]
    if isinstance(value, list) and all(isinstance(v, (bytes, bytearray, memoryview)) for v in value):
        return [bytes(v) for v in value]
    raise BadRow("schema", "image_bytes must be binary or a list of binaries")


def parse_row(conversations: Any, image_bytes: Any) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Messages and the images they reference. A row with no `<image>` marker is text-only: its placeholder
    image (the dataset stores a small black one) is dropped so the encoder never runs for it."""
    images = parse_image_bytes(image_bytes)
    messages, markers = check_conversation(decode_json(conversations), len(images))
    return messages, images if markers else []


def parse_video_row(conversations: Any, image_bytes: Any, video_bytes: Any) -> tuple[list[dict[str, Any]], bytes]:
    """Messages and the video of a row with `video_bytes`: no images beside it, one `<image>` marker for it."""
    if not isinstance(video_bytes, (bytes, bytearray, memoryview)):
        raise BadRow("schema", "video_bytes must be binary")
    if parse_image_bytes(image_bytes):
        raise BadRow("schema", "a row with video_bytes holds no image_bytes: its one <image> marker is the video")
    messages, markers = check_conversation(decode_json(conversations), 1)
    if markers != 1:
        raise BadRow("markers", "a row with video_bytes needs one <image> marker, where its frames go")
    return messages, bytes(video_bytes)
