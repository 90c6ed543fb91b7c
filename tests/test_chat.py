"""ChatSession: later turns reuse the earlier turns' keys/values and reply exactly as if they had not."""

from __future__ import annotations

import pytest
import torch

from mmv.chat import ChatSession
from mmv.errors import MmvError
from mmv.images import open_image
from mmv.loading import load_model
from mmv.sampling import SamplingConfig
from mmv.tokenizer import encode, render_chat
from tests.conftest import IMAGES_DIR, TOKENIZER_DIR, load_p32_for_chat
from tests.loading.helpers import folder_with_positions

IMAGE = IMAGES_DIR / "image-01-golden-dog-balloons.jpg"
QUESTIONS = ["What is in this image?", "And what colour is it?", "Say it again, shorter."]


def converse(reuse: bool) -> list:
    loaded = load_p32_for_chat()
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
    loaded = load_p32_for_chat()
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=4, temperature=0))
    session.ask("Hello")
    session.clear()
    assert session.prefix.cache is None and session.prefix.tokens == []
    assert session.ask("Hello").reused_tokens == 0


def test_a_reply_stops_at_the_positions_and_a_longer_conversation_is_refused(tmp_path):
    """generate() indexes the rotary tables past their end (IndexError) when a prompt plus its reply outgrows
    max_position_embeddings: the session cuts the reply budget to the positions left and refuses, before anything
    runs, a conversation that no longer fits; /clear (clear()) makes room again."""
    loaded = load_model(folder_with_positions(tmp_path / "short", 40), device="cpu", dtype="float32", need_vision=False)
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=30, temperature=0))
    first = session.ask("hi")
    assert first.stopped == "length" and first.positions_full
    prompt = encode(loaded.tokenizer, render_chat(loaded.tokenizer, session.messages()[:1], tokens_per_image=64))
    assert len(prompt) + first.new_tokens == 40 and first.new_tokens < 30
    with pytest.raises(MmvError, match=r"the conversation is \d+ tokens but the model has 40 positions"):
        session.ask("and now?")
    assert len(session.turns) == 2  # the refused message left the history as it was
    session.clear()
    again = session.ask("hi")
    assert again.text == first.text and again.positions_full
    roomy = ChatSession(loaded, SamplingConfig(max_new_tokens=3, temperature=0)).ask("hi")
    assert roomy.stopped == "length" and not roomy.positions_full  # its own budget, not the positions


def tiled_session(tiles: int | None) -> ChatSession:
    loaded = load_p32_for_chat(tiles=tiles)
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


def byte_tokens(tokenizer, data: bytes) -> list[int]:
    """The byte-level BPE token of each byte (GPT-2's byte-to-character map: these bytes are printable ones)."""
    return tokenizer.convert_tokens_to_ids([chr(byte) for byte in data])


def test_a_character_split_across_tokens_streams_whole():
    from mmv.chat import TextStream
    from mmv.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    stream = TextStream(tokenizer)
    pieces = [stream.push(token) for token in [*encode(tokenizer, "a"), *byte_tokens(tokenizer, "好".encode())]]
    assert pieces == ["a", "", "", "好"]


def test_bytes_that_never_make_a_character_stream_at_once_instead_of_waiting():
    # a random model's reply of lone continuation bytes (0xAC): held, they showed nothing until the reply ended
    from mmv.chat import TextStream
    from mmv.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    stream = TextStream(tokenizer)
    tokens = [*byte_tokens(tokenizer, b"\xac" * 3), *byte_tokens(tokenizer, "好".encode())]
    pieces = [stream.push(token) for token in tokens]
    assert pieces == ["", "\ufffd", "\ufffd", "\ufffd", "", "好"]
    assert "".join(pieces) == stream.text()
