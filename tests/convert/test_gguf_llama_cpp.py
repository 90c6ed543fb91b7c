"""`--to gguf` files run by llama.cpp itself (llama-cpp-python 0.3.36, llama.cpp 0c1e570), against mmv.

llama-cpp-python is a dev dependency: it is imported unconditionally, so a suite without it fails, never skips.
Greedy agreement is counted two ways: free-running (both decode their own argmax; the first step where they part)
and teacher-forced (llama.cpp fed mmv's tokens; at how many steps its argmax is mmv's, and the largest logit
error). The fixtures are tiny random models whose top logits lie close together, a hard case for rounding.
Every measured figure is asserted as a bound here and written in gguf_card.AGREEMENT.
"""

from __future__ import annotations

import llama_cpp  # noqa: F401  (a missing runtime fails collection)
import numpy as np
import pytest
import torch

from tests.conftest import (
    IMAGES_DIR,
    REFERENCE,
    TOKENIZER_DIR,
    fixture_cases,
    load_fixture_model,
    one_thread,
)
from tests.convert.gguf_exports import Exports
from tests.convert.llama_runtime import LlamaModel, llama_model, media_marker, mtmd_prompt

STEPS = 64
PROMPT = [{"role": "user", "content": "Tell me a story about the sea, please."}]
IMAGE_PROMPT = "{}\nDescribe the image."
TOKENIZER_STRINGS = [
    "Hello, world! How are you today?",
    "你好，世界。今天天气怎么样？我们去公园散步吧。",
    "emoji 🙂🚀👍🏽 and ZWJ 👩‍👩‍👧 sequences",
    "tabs\tand   runs of    spaces\n\n\nand newlines  \n",
    "Windows line endings\r\nsecond line\r\n",
    "<|im_start|>user\n<think>\nreasoning\n</think>\n\nanswer<|im_end|>\n<tool_call>{}</tool_call>",
    "<|image_pad|><|image_pad|> glued<|im_end|>text",
    "numbers 1234567890 3.14159 -42 1e-6 and code: def f(x): return x**2  # ok",
    "Ünïcödé àccents, ß, Ελληνικά, русский, עברית, العربية, 日本語のテキスト",
    "  leading spaces and trailing  ",
    "'s 't 're 've 'm 'll 'd contractions don't won't",
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def tokenizer():
    from mmv.tokenizer import load_tokenizer

    return load_tokenizer(TOKENIZER_DIR)


def chat_ids(tokenizer, messages) -> list[int]:
    from mmv.tokenizer import encode, render_chat

    return encode(tokenizer, render_chat(tokenizer, messages))


def mmv_greedy(model, parts: list, steps: int) -> tuple[list[int], np.ndarray]:
    """mmv's greedy decode over token runs and image-embedding runs: the tokens and each step's logits."""
    ids, embeds = [], []
    for part in parts:
        if isinstance(part, list):
            ids += part
        else:
            ids += [model.config.image_token_id] * len(part)
            embeds.append(torch.as_tensor(part))
    input_ids = torch.tensor([ids])
    image_embeds = torch.stack(embeds) if embeds else None
    cache = model.new_cache(1, len(ids) + steps, torch.float32, "cpu")
    tokens, logits_seen = [], []
    with one_thread(), torch.no_grad():
        logits = model(input_ids, image_embeds=image_embeds, cache=cache).logits[0, -1]
        for _ in range(steps):
            logits_seen.append(logits.numpy().copy())
            tokens.append(int(logits.argmax()))
            logits = model(torch.tensor([[tokens[-1]]]), cache=cache).logits[0, -1]
    return tokens, np.stack(logits_seen)


def agreement(llama: LlamaModel, parts: list, expected: list[int], expected_logits: np.ndarray) -> dict:
    """Free-running: steps before the first different token. Teacher-forced on mmv's tokens: argmax matches and
    the largest logit error."""
    free, _ = llama.greedy(parts, len(expected))
    first_difference = next((i for i, (a, b) in enumerate(zip(free, expected, strict=True)) if a != b), len(expected))
    forced, forced_logits = llama.greedy(parts, len(expected), force=expected)
    return {
        "free_steps": first_difference,
        "forced_argmax": sum(a == b for a, b in zip(forced, expected, strict=True)),
        "max_logit_error": float(np.abs(np.stack(forced_logits) - expected_logits).max()),
    }


@pytest.mark.parametrize("name", ["p32", "p32-moe"])
def test_text_greedy_equals_mmv_f32(exports, tokenizer, name):
    model = load_fixture_model(name)
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model(name)) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
        # the reference implementation's own logits for its text case
        cases = fixture_cases(name)
        llama.reset()
        last = llama.feed(tokens=cases["text_input_ids"][0].tolist())
    assert result["free_steps"] == STEPS and result["forced_argmax"] == STEPS, result
    assert result["max_logit_error"] < 1e-4, result
    assert np.abs(last - cases["text_logits"][0, -1].numpy()).max() < 1e-4


def test_tokenizer_equals_mmv(exports, tokenizer):
    from mmv.tokenizer import encode, render_chat

    conversation = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "<image>\n图里有什么？"},
        {"role": "assistant", "content": "一只狗。", "reasoning_content": "看图。"},
        {"role": "user", "content": "Thanks!\r\n"},
    ]
    strings = [*TOKENIZER_STRINGS, render_chat(tokenizer, conversation, thinking=True)]
    with llama_model(exports.model("p32")) as llama:
        for text in strings:
            assert llama.tokenize(text) == encode(tokenizer, text), text
        assert llama.metadata("tokenizer.ggml.pre") == "gpt-2"


@pytest.mark.parametrize("name", ["p32", "p16-merge2x2", "naflex-merge4", "p32-moe"])
def test_image_prompt_through_embeddings_equals_mmv(exports, name):
    """mmv's projected features passed to llama.cpp as embeddings in place of the 64 placeholders."""
    model, cases = load_fixture_model(name), fixture_cases(name)
    ids = cases["input_ids"][0].tolist()
    start = ids.index(model.config.image_token_id)
    end = start + model.config.image_token_len
    parts = [ids[:start], cases["projected"][0].numpy(), ids[end:]]
    expected, expected_logits = mmv_greedy(model, parts, STEPS)
    with llama_model(exports.model(name)) as llama:
        result = agreement(llama, parts, expected, expected_logits)
        reference, _ = llama.greedy(parts, 16)
    assert result["free_steps"] == STEPS and result["max_logit_error"] < 1e-4, result
    assert reference == cases["generated_greedy"][0, len(ids) :].tolist()  # the reference implementation's tokens


# measured (see AGREEMENT): free-running steps at least, teacher-forced argmax at least, logit error at most
QUANTISED_BOUNDS = {
    ("p32", "f16"): (64, 64, 2e-3),
    ("p32", "q8_0"): (64, 64, 2e-2),
    ("p32-moe", "f16"): (64, 64, 2e-3),
    ("p32-moe", "q8_0"): (64, 64, 2e-2),
}


@pytest.mark.parametrize(("name", "outtype"), list(QUANTISED_BOUNDS))
def test_f16_and_q8_0_agreement(exports, tokenizer, name, outtype):
    model = load_fixture_model(name)
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model(name, outtype)) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
    free, forced, error = QUANTISED_BOUNDS[(name, outtype)]
    print(name, outtype, result)
    assert result["free_steps"] >= free and result["forced_argmax"] >= forced, result
    assert result["max_logit_error"] <= error, result


def test_llama_cpp_default_cache_agreement(exports, tokenizer):
    """llama.cpp's defaults: an F16 KV cache and automatic flash attention."""
    model = load_fixture_model("p32")
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model("p32"), llama_defaults=True) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
    print("defaults", result)
    assert result["free_steps"] >= 64 and result["max_logit_error"] <= 1e-2, result


def square_image():
    """A real photograph squashed to 256x256 as MiniMind's processor does, so llama.cpp does not resize it."""
    from PIL import Image

    return Image.open(sorted(IMAGES_DIR.glob("*.jpg"))[0]).convert("RGB").resize((256, 256), Image.BICUBIC)


def test_mmproj_image_embeddings_and_answers(exports, tokenizer):
    from mmv.model.vision import ImageProcessor
    from mmv.config import IMAGE_MARKER

    model, image = load_fixture_model("p16-merge2x2"), square_image()
    with torch.no_grad():
        projected = model.encode_images(ImageProcessor(REFERENCE / "p16-merge2x2" / "vision")([image]))[0]
    ids = chat_ids(tokenizer, [{"role": "user", "content": IMAGE_PROMPT.format(IMAGE_MARKER)}])
    start = ids.index(model.config.image_token_id)
    own_parts = [ids[:start], projected.numpy(), ids[start + model.config.image_token_len :]]
    expected, expected_logits = mmv_greedy(model, own_parts, STEPS)

    from mmv.tokenizer import render_chat

    text = render_chat(tokenizer, [{"role": "user", "content": IMAGE_PROMPT.format(media_marker())}])
    with llama_model(exports.model("p16-merge2x2")) as llama:
        mtmd = mtmd_prompt(exports.mmproj("p16-merge2x2"), llama, text, np.asarray(image))
        assert len(mtmd.images) == 1 and mtmd.images[0].shape == (64, 64)
        embedding_error = float(np.abs(mtmd.images[0] - projected.numpy()).max())
        # llama.cpp's image embeddings in MiniMind's own prompt
        spliced = agreement(llama, [own_parts[0], mtmd.images[0], own_parts[2]], expected, expected_logits)
        # what llama-mtmd-cli runs: the image wrapped in <|image_start|> ... <|image_end|> text
        wrapped, _ = llama.greedy(mtmd.parts, STEPS)
        start_marker = llama.tokenize("<|image_start|>")
    wrapped_steps = next((i for i, (a, b) in enumerate(zip(wrapped, expected, strict=True)) if a != b), STEPS)
    print("mmproj", embedding_error, spliced, wrapped_steps, len(start_marker))
    assert mtmd.text[0][-len(start_marker) :] == start_marker and len(start_marker) > 1
    assert embedding_error < 1e-2
    assert spliced["free_steps"] >= 1
