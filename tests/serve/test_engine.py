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
