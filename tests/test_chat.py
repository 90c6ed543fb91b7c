"""ChatSession: later turns reuse the earlier turns' keys/values and reply exactly as if they had not."""

from __future__ import annotations

import torch

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


def tiled_session(tiles: int | None) -> ChatSession:
    loaded = load_model(
        REFERENCE / "p32" / "model.pth",
        vision=REFERENCE / "p32" / "vision",
        tokenizer=TOKENIZER_DIR,
        device="cpu",
        dtype="float32",
        tiles=tiles,
    )
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=6, temperature=0))
    session.attach(IMAGE.name, open_image(IMAGE))
    return session


def test_one_tile_replies_exactly_as_without_tiling():
    untiled, one = tiled_session(None), tiled_session(1)
    assert one.loaded.model.config.image_tiles == 1
    assert one.ask(QUESTIONS[0]).text == untiled.ask(QUESTIONS[0]).text
    assert all(torch.equal(a, b) for a, b in zip(one.image_embeds, untiled.image_embeds, strict=True))


def test_a_tiled_image_fills_five_runs_and_later_turns_still_reuse_them():
    session = tiled_session(4)  # the 640x640 photo: a 2x2 grid and the global view
    session.ask(QUESTIONS[0])
    assert len(session.image_embeds) == 5 and [(g.rows, g.cols) for g in session.grids] == [(2, 2)]
    second = session.ask(QUESTIONS[1])
    assert second.reused_tokens > 5 * 64
    fresh = tiled_session(4)
    fresh.ask(QUESTIONS[0])
    fresh.prefix.clear()
    assert fresh.ask(QUESTIONS[1]).text == second.text
