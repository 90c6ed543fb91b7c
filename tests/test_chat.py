"""ChatSession: later turns reuse the earlier turns' keys/values and reply exactly as if they had not."""

from __future__ import annotations

from mmv.chat import ChatSession
from mmv.images import open_image
from mmv.loading import load_model
from mmv.sampling import SamplingConfig
from tests.conftest import IMAGES_DIR, REFERENCE, TOKENIZER_DIR

IMAGE = IMAGES_DIR / "image-01-golden-dog-balloons.jpg"
QUESTIONS = ["What is in this image?", "And what colour is it?", "Say it again, shorter."]


def converse(reuse: bool) -> list:
    loaded = load_model(
        REFERENCE / "p32" / "model.pth",
        vision=REFERENCE / "p32" / "vision",
        tokenizer=TOKENIZER_DIR,
        device="cpu",
        dtype="float32",
    )
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=10, temperature=0))
    session.attach(IMAGE.name, open_image(IMAGE))
    replies = []
    for question in QUESTIONS:
        if not reuse:
            session.prefix.clear()
        replies.append(session.ask(question))
    return replies


def test_turns_reuse_the_history_and_reply_as_without_it():
    reused, fresh = converse(reuse=True), converse(reuse=False)
    assert [r.text for r in reused] == [r.text for r in fresh]
    assert reused[0].reused_tokens == 0
    # the image's 64 placeholders and the first question at least, then also the first exchange
    assert 64 < reused[1].reused_tokens < reused[2].reused_tokens
    assert all(r.reused_tokens == 0 for r in fresh)


def test_clear_forgets_the_cached_history():
    loaded = load_model(
        REFERENCE / "p32" / "model.pth",
        vision=REFERENCE / "p32" / "vision",
        tokenizer=TOKENIZER_DIR,
        device="cpu",
        dtype="float32",
    )
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=4, temperature=0))
    session.ask("Hello")
    session.clear()
    assert session.prefix.cache is None and session.prefix.tokens == []
    assert session.ask("Hello").reused_tokens == 0
