"""One parquet row of the published schema -> messages and image bytes (REFERENCE.md section 5).

`conversations` is a JSON string or an already-decoded list of {role, content}; `image_bytes` is one binary or a
list of binaries (the k-th `<image>` marker is the k-th image). Malformed rows raise `BadRow` with the reason.
"""

from __future__ import annotations

import json
from typing import Any

REQUIRED_COLUMNS = ("conversations", "image_bytes")


class BadRow(ValueError):
    """A row that cannot be used; `kind` is one of: json, schema, markers, image."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_conversations(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, (bytes, str)):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadRow("json", f"conversations is not valid JSON ({exc})") from None
    if not isinstance(value, list) or not value:
        raise BadRow("schema", "conversations must be a non-empty list of {role, content}")
    messages = []
    for turn in value:
        if not isinstance(turn, dict) or "role" not in turn or not isinstance(turn.get("content", ""), str):
            raise BadRow("schema", "each conversation turn needs a role and string content")
        messages.append(dict(turn))
    return messages


def parse_image_bytes(value: Any) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [bytes(value)]
    if isinstance(value, list) and all(isinstance(v, (bytes, bytearray, memoryview)) for v in value):
        return [bytes(v) for v in value]
    raise BadRow("schema", "image_bytes must be binary or a list of binaries")


def marker_count(messages: list[dict[str, Any]]) -> int:
    return sum(turn.get("content", "").count("<image>") for turn in messages)


def parse_row(conversations: Any, image_bytes: Any) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Messages and the images they reference. A row with no `<image>` marker is text-only: its placeholder
    image (the dataset stores a small black one) is dropped so the encoder never runs for it."""
    messages = parse_conversations(conversations)
    images = parse_image_bytes(image_bytes)
    markers = marker_count(messages)
    if markers == 0:
        return messages, []
    if markers != len(images):
        raise BadRow("markers", f"{markers} <image> marker(s) but {len(images)} image(s)")
    return messages, images
