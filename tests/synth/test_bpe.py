"""The offline tokenizer: the reference's special ids and exactly the reference chat template's text."""

from __future__ import annotations

import json

import pytest

from mmv.synth.bpe import train_tokenizer
from mmv.tokenizer import encode, expand_image_markers, load_tokenizer, render_chat
from tests.conftest import TOKENIZER_DIR

TEXTS = ["Three large red circles.", "There is one shape.", "What colour are the shapes?", "It is on the left."]
TOOLS = [{"type": "function", "function": {"name": "count_shapes", "parameters": {"type": "object"}}}]
CONVERSATIONS = [
    [{"role": "user", "content": "<image>\nWhat colour are the shapes?"}],
    [
        {"role": "user", "content": "<image>\nHow many?"},
        {"role": "assistant", "content": "There are two shapes."},
        {"role": "user", "content": "And the colour?"},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello.", "reasoning_content": "\nA greeting.\n"},
        {"role": "user", "content": "<image>\n<image>\nCompare."},
        {"role": "assistant", "content": "<think>\nlook\n</think>\n\nThe first is red."},
    ],
    [
        {"role": "user", "content": "Count them."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "count_shapes", "arguments": {"colour": "red"}}},
                {"name": "count_shapes", "arguments": '{"colour": "blue"}'},
            ],
        },
        {"role": "tool", "content": "2"},
        {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "Five."},
    ],
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    folder = train_tokenizer(TEXTS * 20, tmp_path_factory.mktemp("tok"))
    return load_tokenizer(folder), load_tokenizer(TOKENIZER_DIR)


def test_reserved_tokens_have_the_reference_ids_and_flags(tokenizers):
    ours, _ = tokenizers
    reference = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    ours_added = {i: t for i, t in ours.added_tokens_decoder.items()}
    for index, token in reference.items():
        assert ours_added[int(index)].content == token["content"]
        assert ours_added[int(index)].special == token["special"], token["content"]
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (1, 2, 0)
    assert ours.convert_tokens_to_ids(["<|image_pad|>", "<think>", "</think>"]) == [12, 25, 26]
    # think tags survive skip_special_tokens, chat markers do not
    ids = encode(ours, "<|im_start|>assistant\n<think>\n\n</think>\n\nThree red circles.<|im_end|>")
    assert ours.decode(ids, skip_special_tokens=True) == "assistant\n<think>\n\n</think>\n\nThree red circles."


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_chat_template_renders_like_the_reference(tokenizers, index):
    ours, reference = tokenizers
    messages = CONVERSATIONS[index]
    for generation in (True, False):
        for thinking in (True, False):
            for tools in (None, TOOLS):
                kwargs = dict(tokenize=False, add_generation_prompt=generation, open_thinking=thinking, tools=tools)
                assert ours.apply_chat_template(messages, **kwargs) == reference.apply_chat_template(messages, **kwargs)


def test_image_runs_tokenise_to_placeholders(tokenizers):
    ours, _ = tokenizers
    text = render_chat(ours, CONVERSATIONS[2][:4])
    ids = encode(ours, text)
    assert ids.count(12) == 128 and ids[0] == 1
    assert ours.decode(ids) == expand_image_markers(text)
    assert max(ids) < len(ours)
