"""The engine in-process: rows that leave a batch at different steps, each reply equal to `generate` alone."""

from __future__ import annotations

import threading

from mmv.generate import generate
from mmv.sampling import SamplingConfig
from mmv.serve.engine import Engine, EngineSettings
from mmv.serve.prompt import Prompt
from mmv.serve.sequence import Finished, GenerationRequest, TextDelta
from tests.conftest import TOKENIZER_DIR, load_fixture_model

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


def test_a_resent_image_is_encoded_once_and_its_history_reused():
    from mmv.images import open_image
    from mmv.loading import load_model
    from mmv.serve.image_input import CheckedImage
    from mmv.serve.prompt import PromptBuilder
    from mmv.serve.protocol import parse_chat_request
    from tests.conftest import IMAGES_DIR, REFERENCE

    loaded = load_model(
        REFERENCE / "p32" / "model.pth",
        vision=REFERENCE / "p32" / "vision",
        tokenizer=TOKENIZER_DIR,
        device="cpu",
        dtype="float32",
    )
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
