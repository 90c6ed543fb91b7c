"""The OpenAI response shapes: a whole chat completion, the chunks of a streamed one, and the usage object."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from mmv.serve.sequence import Finished


def usage(finished: Finished) -> dict[str, Any]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
    }


class Completion:
    """One request's identity, shared by every chunk of its reply."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}

    def whole(self, text: str, finished: Finished) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finished.reason,
        }
        return {**self._head("chat.completion"), "choices": [choice], "usage": usage(finished)}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, with_usage: bool = False) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        body = {**self._head("chat.completion.chunk"), "choices": [choice]}
        if with_usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self, finished: Finished) -> str:
        return sse({**self._head("chat.completion.chunk"), "choices": [], "usage": usage(finished)})


def sse(body: dict[str, Any] | str) -> str:
    """One server-sent event: `data: <json>` and a blank line."""
    return f"data: {body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}\n\n"


DONE = sse("[DONE]")
