"""The OpenAI API of `mmv serve`, through the official `openai` client: replies, streaming, usage, every refusal."""

from __future__ import annotations

import httpx2
import openai
import pytest
from PIL import Image

from tests.conftest import IMAGES_DIR, TOKENIZER_DIR, fixture_cases, load_p32_for_chat
from tests.serve.conftest import API_KEY, FIXTURE_IMAGE, PHOTOS, data_uri, image_part, image_uri, noise_png, stream_text

QUESTION = "What is in this image?"


def reference_reply() -> str:
    """The reference's 16 greedy tokens for the fixture image and question (what `mmv chat --temperature 0` says)."""
    from mmv.tokenizer import load_tokenizer

    cases = fixture_cases("p32")
    new = cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
    return load_tokenizer(TOKENIZER_DIR).decode(new, skip_special_tokens=True)


def ask(client, content, **kwargs):
    return client.chat.completions.create(
        model="model", messages=[{"role": "user", "content": content}], temperature=0, **kwargs
    )


def test_models_and_health(server):
    assert [m.id for m in server.client().models.list().data] == ["model"]
    health = httpx2.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["api_key_required"] is True


def test_greedy_reply_with_an_image_is_the_reference_reply(server):
    reply = ask(
        server.client(), [image_part(image_uri(FIXTURE_IMAGE)), {"type": "text", "text": QUESTION}], max_tokens=16
    )
    assert reply.choices[0].message.content == reference_reply()
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 16
    assert reply.usage.prompt_tokens > 64  # the image's placeholder run is part of the prompt


def test_streaming_gives_the_same_reply_in_chunks(server):
    content = [image_part(image_uri(FIXTURE_IMAGE)), {"type": "text", "text": QUESTION}]
    stream = ask(server.client(), content, max_tokens=16, stream=True, stream_options={"include_usage": True})
    text, chunks = stream_text(stream)
    assert text == reference_reply()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # it really streamed
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    plain = ask(server.client(), content, max_tokens=16, stream=True)
    assert all(c.usage is None for c in plain)  # usage only when asked for


def test_a_conversation_with_two_images_replies_as_mmv_chat_and_reuses_its_history(server):
    from mmv.chat import ChatSession
    from mmv.images import open_image
    from mmv.sampling import SamplingConfig

    first, second = PHOTOS[0], PHOTOS[1]
    loaded = load_p32_for_chat()
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=12, temperature=0))
    session.attach(first.name, open_image(first))
    expected = [session.ask("Describe this picture.").text]
    session.attach(second.name, open_image(second))
    expected.append(session.ask("And how does this one differ?").text)

    client = server.client()
    messages = [
        {"role": "user", "content": [image_part(image_uri(first)), {"type": "text", "text": "Describe this picture."}]}
    ]
    one = client.chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=12)
    messages += [
        {"role": "assistant", "content": one.choices[0].message.content},
        {
            "role": "user",
            "content": [image_part(image_uri(second)), {"type": "text", "text": "And how does this one differ?"}],
        },
    ]
    two = client.chat.completions.create(model="model", messages=messages, temperature=0, max_tokens=12)
    assert [one.choices[0].message.content, two.choices[0].message.content] == expected
    # the first turn (its image included) is not prefilled again
    assert two.usage.prompt_tokens_details.cached_tokens > one.usage.prompt_tokens
    assert two.usage.prompt_tokens > 2 * 64


def test_seeded_sampling_is_reproducible(server):
    client = server.client()

    def sample(seed):
        reply = client.chat.completions.create(
            model="model",
            messages=[{"role": "user", "content": "Tell a story."}],
            temperature=1.0,
            top_p=0.9,
            seed=seed,
            max_tokens=12,
        )
        return reply.choices[0].message.content

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_stop_strings_end_the_reply_and_are_not_returned(server):
    full = ask(server.client(), "Hello", max_tokens=20).choices[0].message.content
    cut = full[len(full) // 2 : len(full) // 2 + 2]
    assert cut.strip() and cut in full
    stopped = ask(server.client(), "Hello", max_tokens=20, stop=[cut, "never appears"])
    assert stopped.choices[0].message.content == full[: full.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"
    streamed, _ = stream_text(ask(server.client(), "Hello", max_tokens=20, stop=cut, stream=True))
    assert streamed == full[: full.index(cut)]


def test_thinking_opens_the_think_block(server):
    """The `thinking` field (extra_body for the openai client) renders the template with open_thinking."""
    client = server.client()
    plain = ask(client, "Hello", max_tokens=4)
    thinking = ask(client, "Hello", max_tokens=4, extra_body={"thinking": True})
    # the open block is 4 tokens shorter than the closed, empty one: <think>\n versus <think>\n\n</think>\n\n
    assert thinking.usage.prompt_tokens < plain.usage.prompt_tokens


def bad_request(server, body=None, *, content=None, headers=None):
    headers = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
    response = httpx2.post(f"{server.url}/v1/chat/completions", json=body, content=content, headers=headers, timeout=60)
    return response.status_code, response.json()["error"]


def message_with(part) -> dict:
    return {"model": "model", "messages": [{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}]}


def truncated_jpeg() -> bytes:
    return (IMAGES_DIR / "image-04-yellow-car.jpg").read_bytes()[:5000]


def bomb_png(tmp_path) -> bytes:
    Image.new("1", (12_000, 12_000)).save(tmp_path / "bomb.png")
    return (tmp_path / "bomb.png").read_bytes()


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("not-an-image", 400, "is not an image"),
        ("truncated", 400, "cannot be decoded"),
        ("bomb", 400, "pixel"),
        ("over-image-limit", 400, "1 MB image limit"),
        ("not-base64", 400, "not valid base64"),
        ("url-without-flag", 400, "--allow-image-urls"),
        ("local-path", 400, "local paths are never read"),
        ("image-in-text", 400, "send images as image_url parts"),
    ],
)
def test_bad_images_are_a_400_naming_the_problem(server, tmp_path, case, status, says):
    uri = {
        "not-an-image": lambda: data_uri(b"plain text, not a picture"),
        "truncated": lambda: data_uri(truncated_jpeg(), "image/jpeg"),
        "bomb": lambda: data_uri(bomb_png(tmp_path)),
        "over-image-limit": lambda: data_uri(noise_png(700, 700)),
        "not-base64": lambda: "data:image/png;base64,@@@@",
        "url-without-flag": lambda: "http://127.0.0.1:9/cat.png",
        "local-path": lambda: str(FIXTURE_IMAGE),
        "image-in-text": lambda: None,
    }[case]()
    part = image_part(uri) if uri else {"type": "text", "text": "look: <image>"}
    code, error = bad_request(server, message_with(part))
    assert code == status and says in error["message"]
    assert error["type"] == "invalid_request_error"
    if case not in ("image-in-text", "local-path", "not-base64"):
        assert "image 1" in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "model"}, "messages", "non-empty list"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "role must be"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "string or a non-empty list"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n", "n must be 1"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools", "tools"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o"}, "model", "not served here"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature", "between"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}, "max_tokens", "limit of 2048"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}},
            "response_format",
            "text response_format",
        ),
    ],
)
def test_invalid_requests_are_a_400_in_the_openai_shape(server, body, param, says):
    code, error = bad_request(server, body)
    assert code == 400 and error["param"] == param and says in error["message"]


def test_the_openai_client_raises_bad_request_for_n_2(server):
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        server.client().chat.completions.create(model="model", messages=[{"role": "user", "content": "hi"}], n=2)


def test_bad_json_and_oversize_bodies_are_refused(server):
    code, error = bad_request(server, content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert code == 400 and error["code"] == "invalid_json"
    big = {"messages": [{"role": "user", "content": "x" * (4 * 2**20)}]}
    code, error = bad_request(server, big)
    assert code == 413 and "3 MB" in error["message"]


def test_a_wrong_or_missing_api_key_is_a_401(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="wrong").chat.completions.create(
            model="model", messages=[{"role": "user", "content": "hi"}]
        )
    assert httpx2.get(f"{server.url}/v1/models").status_code == 401
    code, error = bad_request(server, {"messages": []}, headers={"Authorization": "Bearer nope"})
    assert code == 401 and error["code"] == "invalid_api_key"


def test_unknown_routes_are_json_errors(server):
    response = httpx2.get(f"{server.url}/v1/nothing-here")
    assert response.status_code == 404 and "error" in response.json()
