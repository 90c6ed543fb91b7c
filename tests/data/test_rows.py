"""Parsing one row without a tokenizer: each kind of bad row, and the order the checks run in."""

from __future__ import annotations

import json

import pytest

from mmv.data.rows import MAX_DEPTH, BadRow, parse_row
from tests.data.parquet_files import ANSWER, PLACEHOLDER, USER_IMAGE, conversation, jpeg


def refused(conversations, image_bytes=PLACEHOLDER) -> tuple[str, str]:
    with pytest.raises(BadRow) as caught:
        parse_row(conversations, image_bytes)
    return caught.value.kind, str(caught.value)


def test_a_good_row_keeps_its_turns_and_images():
    messages, images = parse_row(conversation(USER_IMAGE, ANSWER), jpeg())
    assert messages == [USER_IMAGE, ANSWER] and images == [jpeg()]
    text_only = [{"role": "user", "content": "Hi"}, ANSWER]
    assert parse_row(json.dumps(text_only).encode(), PLACEHOLDER) == (text_only, [])  # placeholder image dropped
    assert parse_row(text_only, None) == (text_only, [])  # an already decoded list column


def test_extra_keys_that_training_ignores_are_kept_when_well_formed():
    calls = [{"type": "function", "function": {"name": "now", "arguments": "{}"}}]
    turns = [
        {"role": "system", "content": "Tools.", "functions": [{"name": "now", "parameters": {}}]},
        {"role": "user", "content": "Time?"},
        {**ANSWER, "tool_calls": calls, "reasoning_content": "look it up"},
        {"role": "tool", "content": "noon"},
        {"role": "assistant", "content": "Noon.", "tool_calls": None},
    ]
    assert parse_row(json.dumps(turns), None)[0] == turns


@pytest.mark.parametrize(
    ("conversations", "kind", "reason"),
    [
        ('[{"role": "user", ', "json", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "json", f"nested deeper than {MAX_DEPTH} levels"),  # past Python's recursion
        (b'[{"role": "user", "content": "\xff"}]', "unicode", "not UTF-8"),
        (conversation({"role": "user", "content": "\udcff"}, ANSWER), "unicode", "lone surrogate '\\udcff'"),
        (json.dumps({"role": "user", "content": "hi"}), "schema", "non-empty list"),
        (json.dumps([]), "schema", "non-empty list"),
        (json.dumps(["hi", ANSWER]), "schema", "turn 1 is str"),
        (conversation({"role": "human", "content": "hi"}, ANSWER), "schema", "role 'human'"),
        (conversation({"role": "user", "content": ["hi"]}, ANSWER), "schema", "content of type list"),
        (conversation({"role": "user", "content": "hi"}), "schema", "no assistant turn"),
        (conversation({"role": "user", "content": "hi"}, {**ANSWER, "tool_calls": [1]}), "schema", "tool_calls"),
        (conversation({"role": "user", "content": "hi"}, {**ANSWER, "functions": "x"}), "schema", "functions"),
        (conversation({"role": "user", "content": "<image><image>"}, ANSWER), "markers", "2 <image> marker(s)"),
        (conversation({"role": "user", "content": "hi"}, {**ANSWER, "reasoning_content": "<image>"}), "markers", ""),
        (conversation({"role": "user", "content": "hi", "name": "<|image_pad|>"}, ANSWER), "markers", "itself"),
    ],
)
def test_each_kind_of_bad_row(conversations, kind, reason):
    found, message = refused(conversations, jpeg())
    assert found == kind and reason in message


def test_nesting_past_the_limit_is_refused_before_any_template_sees_it():
    def row(levels: int) -> str:
        deep: object = "leaf"
        for _ in range(levels):
            deep = [deep]
        system = {"role": "system", "content": "s", "functions": [{"parameters": deep}]}  # deep sits at depth 5
        return conversation(system, {"role": "user", "content": "q"}, ANSWER)

    assert parse_row(row(MAX_DEPTH - 5), None)[0][0]["role"] == "system"
    assert refused(row(MAX_DEPTH - 4)) == ("json", f"conversations is nested deeper than {MAX_DEPTH} levels")


def test_the_first_failing_check_names_the_kind():
    """json, unicode, schema, markers: a row broken in several ways gets the earliest kind."""
    broken_everywhere = conversation({"role": "robot", "content": "\ud800 <image><image>"})
    assert refused(broken_everywhere)[0] == "unicode"
    assert refused(conversation({"role": "robot", "content": "<image><image>"}))[0] == "schema"
