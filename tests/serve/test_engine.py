"""The engine in-process: rows that leave a batch at different steps, each reply equal to `generate` alone."""

from __future__ import annotations

import threading
import time

from mmv.generate import generate
from mmv.model.packed import PackedLinear
from mmv.sampling import SamplingConfig
from mmv.serve.engine import Engine, EngineSettings
from mmv.serve.prompt import Prompt
from mmv.serve.sequence import Failed, Finished, GenerationRequest, TextDelta
from tests.conftest import TOKENIZER_DIR, load_fixture_model, load_p32_for_chat

PROMPTS = [[1, 832, 311, 234, 107, 108, 2], [1, 1388, 570], [1, 500, 501, 502, 503, 504]]


def run_together(engine: Engine, budgets: list[int]) -> list[list]:
    events: list[list] = [[] for _ in PROMPTS]
    done = threading.Semaphore(0)

    def collect(index):
        def emit(event):
            events[index].append(event)
            if not isinstance(event, TextDelta):
                done.release()

        return emit

    requests = [
        GenerationRequest(Prompt(p, [], budget), SamplingConfig(max_new_tokens=budget, temperature=0), [], collect(i))
        for i, (p, budget) in enumerate(zip(PROMPTS, budgets, strict=True))
    ]
    with engine.wakeup:  # all three are admitted in one iteration
        engine.waiting.extend(requests)
        engine.wakeup.notify()
    for _ in PROMPTS:
        assert done.acquire(timeout=60)
    return events


def test_rows_finishing_at_different_steps_leave_and_the_rest_decode_on():
    from mmv.tokenizer import load_tokenizer

    model, tokenizer = load_fixture_model("p32"), load_tokenizer(TOKENIZER_DIR)
    engine = Engine(model, tokenizer, threading.Lock(), EngineSettings(max_batch=8, grow=4))
    assert isinstance(model.lm_head, PackedLinear)  # the engine decodes on oneDNN-packed weights
    engine.start()
    budgets = [3, 9, 14]  # the batch shrinks twice and grows its cache (grow=4) along the way
    events = run_together(engine, budgets)
    engine.close(0)
    assert engine.join(10)
    for prompt, budget, got in zip(PROMPTS, budgets, events, strict=True):
        alone = generate(model, [prompt], SamplingConfig(max_new_tokens=budget, temperature=0)).tokens[0]
        assert "".join(e.text for e in got if isinstance(e, TextDelta)) == tokenizer.decode(
            alone, skip_special_tokens=True
        )
        assert isinstance(got[-1], Finished) and got[-1].completion_tokens == len(alone)
    assert engine.stats.requests == 3 and engine.busy_rows == 0


def test_an_idle_engine_admits_requests_arriving_milliseconds_apart_together():
    from mmv.tokenizer import load_tokenizer

    model, tokenizer = load_fixture_model("p32"), load_tokenizer(TOKENIZER_DIR)
    engine = Engine(model, tokenizer, threading.Lock(), EngineSettings(max_batch=8))
    engine.start()
    done = threading.Semaphore(0)
    prompt = PROMPTS[0]
    for _ in range(4):  # as the server's request threads hand them over: a few milliseconds apart
        engine.submit(
            GenerationRequest(
                Prompt(prompt, [], 2),
                SamplingConfig(max_new_tokens=2, temperature=0),
                [],
                lambda event: None if isinstance(event, TextDelta) else done.release(),
            )
        )
        time.sleep(0.005)
    for _ in range(4):
        assert done.acquire(timeout=60)
    engine.close(0)
    assert engine.join(10)
    assert engine.stats.requests == 4 and engine.stats.prefills == 1  # one shared prefill, not the first one alone


def test_an_idle_engine_waits_for_a_request_still_being_prepared():
    from mmv.tokenizer import load_tokenizer

    model, tokenizer = load_fixture_model("p32"), load_tokenizer(TOKENIZER_DIR)
    engine = Engine(model, tokenizer, threading.Lock(), EngineSettings(max_batch=8, gather_s=0.02, pack_weights=False))
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    engine.start()
    done = threading.Semaphore(0)

    def request():
        return GenerationRequest(
            Prompt(PROMPTS[0], [], 2),
            SamplingConfig(max_new_tokens=2, temperature=0),
            [],
            lambda event: None if isinstance(event, TextDelta) else done.release(),
        )

    with engine.announced():  # the second request's images take 100 ms to decode, five times gather_s
        engine.submit(request())
        time.sleep(0.1)
        engine.submit(request())
    for _ in range(2):
        assert done.acquire(timeout=60)
    engine.close(0)
    assert engine.join(10)
    assert engine.stats.requests == 2 and engine.stats.prefills == 1 and engine.preparing == 0


def test_a_resent_image_is_encoded_once_and_its_history_reused():
    from mmv.images import open_image
    from mmv.serve.image_input import CheckedImage
    from mmv.serve.prompt import PromptBuilder
    from mmv.serve.protocol import parse_chat_request
    from tests.conftest import IMAGES_DIR

    loaded = load_p32_for_chat()
    lock = threading.Lock()
    engine = Engine(loaded.model, loaded.tokenizer, lock, EngineSettings())
    builder = PromptBuilder(loaded, lock, max_new_tokens_limit=8)
    photo = IMAGES_DIR / "image-01-golden-dog-balloons.jpg"
    image = CheckedImage(open_image(photo), "digest-of-the-photo")
    first = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:"}}, {"type": "text", "text": "Hi"}],
        }
    ]
    turns = [first, [*first, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More?"}]]
    engine.start()
    finished = []
    for messages in turns:
        request = parse_chat_request(
            {"messages": messages, "max_tokens": 4, "temperature": 0}, model_names=("m",), max_tokens_limit=8
        )
        prompt = builder.build(request, [image])
        events, done = [], threading.Event()

        def emit(event, events=events, done=done):
            events.append(event)
            if not isinstance(event, TextDelta):
                done.set()

        sampling = SamplingConfig(max_new_tokens=prompt.max_new_tokens, temperature=0)
        engine.submit(GenerationRequest(prompt, sampling, [], emit))
        assert done.wait(60)
        finished.append(events[-1])
    engine.close(0)
    assert engine.join(10)
    assert engine.images.encoded == 1  # the second turn found the photo's features
    assert finished[0].cached_tokens == 0 and finished[1].cached_tokens > 64


def collector() -> tuple[list, threading.Event, object]:
    events, done = [], threading.Event()

    def emit(event):
        events.append(event)
        if not isinstance(event, TextDelta):
            done.set()

    return events, done, emit


def submit_together(engine: Engine, prompts: list) -> list[list]:
    """Queue the prompts (greedy) in one go, so that the engine admits them in one iteration; their events."""
    collected = [collector() for _ in prompts]
    requests = [
        GenerationRequest(prompt, SamplingConfig(max_new_tokens=prompt.max_new_tokens, temperature=0), [], emit)
        for prompt, (_, _, emit) in zip(prompts, collected, strict=True)
    ]
    with engine.wakeup:
        engine.waiting.extend(requests)
        engine.wakeup.notify()
    for _, done, _ in collected:
        assert done.wait(60)
    return [events for events, _, _ in collected]


def reply_text(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def solo_reply(loaded, prompt) -> str:
    """The prompt alone: its images encoded alone, one unpadded prefill, greedy."""
    from mmv.serve.image_features import ImageFeatures

    embeds = ImageFeatures(loaded.model, 8).embeds([prompt.images])[0]
    sampling = SamplingConfig(max_new_tokens=prompt.max_new_tokens, temperature=0)
    tokens = generate(loaded.model, [prompt.tokens], sampling, image_embeds=embeds).tokens[0]
    return loaded.tokenizer.decode(tokens, skip_special_tokens=True)


def fixture_prompts():
    """The p32 fixture model loaded as `mmv serve` loads it, and a builder of prompts from (content, budget)."""
    from mmv.images import open_image
    from mmv.serve.image_input import CheckedImage
    from mmv.serve.prompt import PromptBuilder
    from mmv.serve.protocol import parse_chat_request
    from tests.conftest import IMAGES_DIR, REFERENCE

    loaded = load_p32_for_chat()
    photos = [*sorted(IMAGES_DIR.glob("*.jpg"))[:2], REFERENCE / "p32" / "image.png"]
    images = [CheckedImage(open_image(path), f"digest-{path.name}") for path in photos]
    builder = PromptBuilder(loaded, threading.Lock(), max_new_tokens_limit=16)

    def build(messages: list[dict], budget: int, image_numbers: list[int]):
        body = {"messages": messages, "max_tokens": budget, "temperature": 0}
        request = parse_chat_request(body, model_names=("m",), max_tokens_limit=16)
        return builder.build(request, [images[n] for n in image_numbers])

    return loaded, builder.lock, build


def user(text: str, images: int = 0) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": "data:"}} for _ in range(images)]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def test_requests_joining_together_share_one_encoder_call_and_prefill_and_get_their_solo_replies():
    loaded, lock, build = fixture_prompts()
    engine = Engine(loaded.model, loaded.tokenizer, lock, EngineSettings())
    engine.start()
    first = [user("Hi", images=1)]
    (turn_one,) = submit_together(engine, [build(first, 4, [0])])
    history = [*first, {"role": "assistant", "content": reply_text(turn_one)}, user("More?")]
    joining = [
        build(history, 5, [0]),  # the conversation's next turn: its history is reused, so it is prefilled alone
        build([user("What is in this image?", images=1)], 7, [1]),
        build([user("Hi")], 3, []),  # no image, and far shorter than the others
        build([user("Describe it.", images=1)], 8, [1]),  # the same picture as the second: encoded once
        build([user("Name three colours in the picture, please.", images=1)], 6, [2]),
    ]
    replies = submit_together(engine, joining)
    engine.close(0)
    assert engine.join(10)
    for prompt, events in zip(joining, replies, strict=True):
        assert reply_text(events) == solo_reply(loaded, prompt)
        assert isinstance(events[-1], Finished)
    assert engine.images.encoded == 3 and engine.images.encoder_calls == 2  # one call per admission
    assert engine.stats.prefills == 3  # turn one; the resumed turn alone; the four new prompts together
    assert replies[0][-1].cached_tokens > 64 and all(events[-1].cached_tokens == 0 for events in replies[1:])


def test_a_request_that_breaks_a_shared_prefill_fails_alone():
    from mmv.serve.prompt import Prompt

    loaded, lock, build = fixture_prompts()
    good = [build([user("What is in this image?", images=1)], 5, [1]), build([user("Hi")], 4, [])]
    whole = build([user("Describe it.", images=1)], 5, [2])
    image_token = loaded.model.config.image_token_id
    # ten placeholders for an image that needs a full run: the shared forward cannot splice the images
    broken = Prompt([t for t in whole.tokens if t != image_token] + [image_token] * 10, whole.images, 5)
    engine = Engine(loaded.model, loaded.tokenizer, lock, EngineSettings())
    engine.start()
    replies = submit_together(engine, [good[0], broken, good[1]])
    engine.close(0)
    assert engine.join(10)
    assert isinstance(replies[1][-1], Failed) and replies[1][-1].error.status == 500
    for prompt, events in zip(good, [replies[0], replies[2]], strict=True):
        assert reply_text(events) == solo_reply(loaded, prompt)
    assert engine.stats.prefills == 2 and engine.busy_rows == 0
