"""Request parsing: content parts in order, defaults, and each refusal naming its field."""

from __future__ import annotations

import pytest

from mmv.serve.prompt import template_messages
from mmv.serve.protocol import ApiError, ImagePart, parse_chat_request


def parse(**body):
    return parse_chat_request(body, model_names=("m",), max_tokens_limit=100)


def test_parts_keep_their_order_and_render_as_mmv_chat_renders_them():
    request = parse(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:a"}},
                    {"type": "text", "text": "What is it?"},
                ],
            },
        ],
        max_completion_tokens=7,
        stop="x",
        stream=True,
        stream_options={"include_usage": True},
        thinking=True,
        frequency_penalty=1.5,
        logprobs=False,
    )
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].parts == [ImagePart("data:a"), "What is it?"]
    assert template_messages(request.messages)[1]["content"] == "<image>\nWhat is it?"
    assert (request.max_tokens, request.stop, request.stream, request.include_usage, request.thinking) == (
        7,
        ["x"],
        True,
        True,
        True,
    )
    assert (request.temperature, request.top_p, request.seed) == (1.0, 1.0, None)  # OpenAI's defaults


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages[1].role"),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:a"}}]},
                    {"role": "user", "content": "hi"},
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": "7"}, "seed"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_refusals_name_the_field(body, param):
    with pytest.raises(ApiError) as caught:
        parse(**body)
    assert caught.value.status == 400 and caught.value.param == param
    assert set(caught.value.body()["error"]) == {"message", "type", "param", "code"}
