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
from PIL import Image

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


# (free-running steps at least, teacher-forced argmax matches at least, max logit error at most), each a margin
# around what was measured (gguf_card.AGREEMENT: 64/64/0.011, 10/62/0.30, 43/63/2.19, 3/47/5.62). The MoE
# error is the weights' rounding flipping near-tied router choices: mmv itself, run on the same weights rounded to
# float16, is 2.19 off its float32 logits too.
QUANTISED_BOUNDS = {
    ("p32", "f16"): (48, 62, 0.03),
    ("p32", "q8_0"): (8, 58, 0.5),
    ("p32-moe", "f16"): (32, 60, 3.0),
    ("p32-moe", "q8_0"): (2, 40, 8.0),
}


@pytest.mark.parametrize(("name", "outtype"), list(QUANTISED_BOUNDS))
def test_f16_and_q8_0_agreement(exports, tokenizer, name, outtype):
    model = load_fixture_model(name)
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model(name, outtype)) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
    free, forced, error = QUANTISED_BOUNDS[(name, outtype)]
    assert result["free_steps"] >= free and result["forced_argmax"] >= forced, result
    assert result["max_logit_error"] <= error, result


def test_f16_of_a_float16_checkpoint(exports, tokenizer):
    """Published checkpoints are float16, so their f16 GGUF holds their exact weights; what remains is ggml's
    float16 matrix products, which round the activations too (measured 64/64, logits within 0.0088)."""
    model = load_fixture_model("p32", "model_fp16.pth")
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model("p32", None, "model_fp16.pth")) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
    assert result["free_steps"] >= 48 and result["max_logit_error"] <= 0.02, result


@pytest.mark.parametrize(("name", "free"), [("p32", 48), ("p32-moe", 24)])
def test_llama_cpp_default_cache_agreement(exports, tokenizer, name, free):
    """llama.cpp's defaults, an F16 KV cache and automatic flash attention (measured: dense 64/64, 0.020; MoE
    38/64, 0.023)."""
    model = load_fixture_model(name)
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(exports.model(name), llama_defaults=True) as llama:
        result = agreement(llama, [prompt], expected, expected_logits)
    assert result["free_steps"] >= free and result["max_logit_error"] <= 0.05, result


def photo() -> Image.Image:
    return Image.open(sorted(IMAGES_DIR.glob("*.jpg"))[0]).convert("RGB")


def mmv_image_case(tokenizer, image) -> tuple:
    """mmv's projected features for `image` and its greedy answer to IMAGE_PROMPT."""
    from mmv.config import IMAGE_MARKER
    from mmv.model.vision import ImageProcessor

    model = load_fixture_model("p16-merge2x2")
    with torch.no_grad():
        projected = model.encode_images(ImageProcessor(REFERENCE / "p16-merge2x2" / "vision")([image]))[0].numpy()
    ids = chat_ids(tokenizer, [{"role": "user", "content": IMAGE_PROMPT.format(IMAGE_MARKER)}])
    start = ids.index(model.config.image_token_id)
    parts = [ids[:start], projected, ids[start + model.config.image_token_len :]]
    return parts, *mmv_greedy(model, parts, STEPS)


def test_mmproj_image_embeddings_and_answers(exports, tokenizer):
    """llama.cpp's lfm2 mmproj on a 256x256 image (which it does not resize), measured: image embeddings within
    3.0e-4 of mmv's (f16 mmproj: 4.6e-4); spliced into MiniMind's own prompt, greedy 64/64 (logits within 1.1e-3);
    as llama-mtmd-cli runs it, wrapped in <|image_start|> / <|image_end|> text (9 tokens for the first), 18/64."""
    from mmv.tokenizer import render_chat

    image = photo().resize((256, 256), Image.BICUBIC)  # what MiniMind's processor feeds the encoder
    parts, expected, expected_logits = mmv_image_case(tokenizer, image)
    text = render_chat(tokenizer, [{"role": "user", "content": IMAGE_PROMPT.format(media_marker())}])
    with llama_model(exports.model("p16-merge2x2")) as llama:
        mtmd = mtmd_prompt(exports.mmproj("p16-merge2x2"), llama, text, np.asarray(image))
        half = mtmd_prompt(exports.mmproj("p16-merge2x2", "f16"), llama, text, np.asarray(image))
        assert [part.shape for part in mtmd.images] == [(64, 64)]
        spliced = agreement(llama, [parts[0], mtmd.images[0], parts[2]], expected, expected_logits)
        wrapped, _ = llama.greedy(mtmd.parts, STEPS)
        start_marker = llama.tokenize("<|image_start|>")
    assert np.abs(mtmd.images[0] - parts[1]).max() < 1e-3
    assert np.abs(half.images[0] - parts[1]).max() < 1e-3
    assert spliced["free_steps"] >= 48 and spliced["max_logit_error"] < 5e-3, spliced
    # the wrapping is real and changes the answer: the marker is split into pieces MiniMind never saw
    assert len(start_marker) > 1 and mtmd.text[0][-len(start_marker) :] == start_marker
    assert next(i for i, (a, b) in enumerate(zip(wrapped, expected, strict=True)) if a != b) < STEPS


def test_mmproj_resizes_larger_images_to_other_token_counts(exports, tokenizer):
    """Why the README says to give llama.cpp 256x256 images: a 640x640 photo becomes 256 image tokens there."""
    from mmv.tokenizer import render_chat

    text = render_chat(tokenizer, [{"role": "user", "content": IMAGE_PROMPT.format(media_marker())}])
    with llama_model(exports.model("p16-merge2x2")) as llama:
        mtmd = mtmd_prompt(exports.mmproj("p16-merge2x2"), llama, text, np.asarray(photo()))
    assert [part.shape[0] for part in mtmd.images] == [256]


def test_yarn_rope_scaling_carries_over(tmp_path, tokenizer):
    """llama.cpp multiplies YaRN's cos and sin by 1 + 0.1 ln(factor) where mmv and the reference do not: the
    exported attention factor cancels it (without it greedy parted at step 1, logits 4.6 off)."""
    from mmv.checkpoint import load_weights, read_checkpoint
    from mmv.config import VLMConfig
    from mmv.convert import convert
    from mmv.model.vlm import MiniMindVLM
    from tests.convert.test_qwen3_export import YARN

    base = VLMConfig(rope_scaling=YARN)
    convert(REFERENCE / "p32" / "llm.pth", "gguf", tmp_path / "y", tokenizer=TOKENIZER_DIR, base=base)
    checkpoint = read_checkpoint(REFERENCE / "p32" / "llm.pth", base=base)
    model = MiniMindVLM(checkpoint.config).eval()
    load_weights(model, checkpoint)
    prompt = chat_ids(tokenizer, PROMPT)
    expected, expected_logits = mmv_greedy(model, [prompt], STEPS)
    with llama_model(tmp_path / "y" / "y.gguf") as llama:
        assert llama.metadata("qwen3.rope.scaling.type") == "yarn"
        result = agreement(llama, [prompt], expected, expected_logits)
    assert result["free_steps"] == STEPS and result["max_logit_error"] < 1e-4, result
    _, plain_logits = mmv_greedy(load_fixture_model("p32"), [prompt], 1)
    assert np.abs(plain_logits - expected_logits[:1]).max() > 1e-3  # YaRN did change the model
