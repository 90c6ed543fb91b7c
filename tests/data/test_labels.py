"""Tokenisation and labels against the reference's own output (fixtures/reference/labels)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from mmv.data.labels import EMPTY_THINK, SYSTEM_PROMPTS, LabelBuilder, Preprocessing
from mmv.data.loader import TrainData
from mmv.data.rows import BadRow, parse_row
from mmv.model.loss import IGNORE_INDEX
from mmv.tokenizer import load_tokenizer
from tests.conftest import TOKENIZER_DIR
from tests.data.parquet_files import LABELS_DIR, make_spec

FIXTURE_LENGTH = 200  # the reference padded every fixture row to this


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def golden():
    return load_file(str(LABELS_DIR / "labels.safetensors"))


def fixture_rows(name: str) -> list[tuple[list[dict], list[bytes]]]:
    table = pq.read_table(LABELS_DIR / f"{name}.parquet")
    return [parse_row(r["conversations"], r["image_bytes"]) for r in table.to_pylist()]


def unpadded(golden: dict, key: str) -> tuple[list[int], list[int]]:
    ids, labels = golden[f"{key}.input_ids"].tolist(), golden[f"{key}.labels"].tolist()
    length = len(ids)
    while length and ids[length - 1] == 0:
        length -= 1
    assert set(labels[length:]) <= {IGNORE_INDEX}
    return ids[:length], labels[:length]


CASES = [(name, mode) for name in ("single", "multi") for mode in ("keep_think", "drop_think")]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_every_fixture_row_matches_the_reference(tokenizer, golden, name, mode):
    builder = LabelBuilder(tokenizer, FIXTURE_LENGTH)
    rows = fixture_rows(name)
    assert len(rows) == len({k.split(".")[2] for k in golden if k.startswith(f"{name}.{mode}.")})
    for index, (messages, images) in enumerate(rows):
        sample = builder.build(messages, len(images), None, drop_empty_think=mode == "drop_think")
        ids, labels = unpadded(golden, f"{name}.{mode}.{index}")
        assert sample.input_ids == ids, f"{name}.{mode}.{index}"
        assert sample.labels == labels, f"{name}.{mode}.{index}"
        assert sample.num_images == len(images)


def test_fixture_rows_cover_the_interesting_cases(tokenizer):
    """The fixtures hold multi-turn, multi-image and text-only-with-system rows, so the comparison covers them."""
    single, multi = fixture_rows("single"), fixture_rows("multi")
    assert any(m[0]["role"] == "system" and not images for m, images in single)
    assert any(sum(t["role"] == "assistant" for t in m) == 2 for m, _ in single)
    assert all(len(images) == 2 for _, images in multi)


def test_batches_pad_to_the_longest_sample_with_reference_rows(golden):
    """Through TrainData (preprocessing off = keep_think): each row's prefix is the reference's, then pad 0 / -100."""
    spec = make_spec(
        [LABELS_DIR / "single.parquet"], max_seq_len=FIXTURE_LENGTH, random_system_prompt=False, drop_empty_think=False
    )
    [batch] = list(TrainData(spec).batches(0, 0, 9))
    lengths = []
    for slot, row in enumerate(batch.rows):
        ids, labels = unpadded(golden, f"single.keep_think.{row}")
        lengths.append(len(ids))
        assert batch.input_ids[slot, : len(ids)].tolist() == ids
        assert batch.labels[slot, : len(ids)].tolist() == labels
        assert set(batch.input_ids[slot, len(ids) :].tolist()) <= {0}
        assert set(batch.labels[slot, len(ids) :].tolist()) <= {IGNORE_INDEX}
    assert sorted(batch.rows) == list(range(9))
    assert batch.input_ids.shape[1] == max(lengths) < FIXTURE_LENGTH
    assert batch.num_images == 6 and batch.pixel_inputs["pixel_values"].shape[0] == 6


@pytest.mark.parametrize("max_len", [30, 85, 100, 115, 121])
def test_truncation_keeps_the_head_and_supervises_up_to_the_cut(tokenizer, golden, max_len):
    """The reference cuts the ids at max_length and then searches the spans, so a cut assistant turn is supervised
    up to the cut; labels of the truncated ids are the prefix of the full labels."""
    messages, images = fixture_rows("single")[1]  # image at 18..81, assistant spans 81..93 and 109..121
    ids, labels = unpadded(golden, "single.keep_think.1")
    builder = LabelBuilder(tokenizer, max_len)
    if max_len < 82:  # the image run or the whole first answer is beyond the cut
        with pytest.raises(BadRow) as caught:
            builder.build(messages, len(images))
        assert caught.value.kind == "too_long"
        return
    sample = builder.build(messages, len(images))
    assert sample.input_ids == ids[:max_len]
    assert sample.labels == labels[:max_len]


def test_an_image_run_is_never_cut(tokenizer):
    messages, images = fixture_rows("single")[0]  # placeholders at 3..66
    for max_len in (3, 40, 66):
        with pytest.raises(BadRow, match="image placeholders"):
            LabelBuilder(tokenizer, max_len).build(messages, len(images))


def test_text_cut_before_any_answer_is_too_long(tokenizer):
    messages, _ = fixture_rows("single")[2]  # text only, answer starts at 30
    with pytest.raises(BadRow, match="no assistant token") as caught:
        LabelBuilder(tokenizer, 28).build(messages, 0)
    assert caught.value.kind == "too_long"


def test_system_prompt_is_rendered_like_a_given_one(tokenizer):
    builder = LabelBuilder(tokenizer, 200)
    messages, _ = fixture_rows("single")[2]
    without_system = messages[1:]
    added = builder.build(without_system, 0, system_prompt=messages[0]["content"])
    given = builder.build(messages, 0)
    assert added == given


def test_drop_think_removes_every_empty_block(tokenizer):
    builder = LabelBuilder(tokenizer, 300)
    messages, _ = fixture_rows("single")[1]
    assert builder.render(messages).count(EMPTY_THINK) == 2
    assert EMPTY_THINK not in builder.render(messages, drop_empty_think=True)


def test_preprocessing_is_seeded_per_row_at_the_reference_rates():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    on = Preprocessing.from_flags(True, True)
    choices = [on.choose(42, 0, row, messages) for row in range(4000)]
    assert choices == [on.choose(42, 0, row, messages) for row in range(4000)]
    assert choices != [on.choose(42, 1, row, messages) for row in range(4000)]
    system_rate = sum(s is not None for s, _ in choices) / len(choices)
    drop_rate = sum(d for _, d in choices) / len(choices)
    assert abs(system_rate - 0.2) < 0.03 and abs(drop_rate - 0.8) < 0.03
    assert {s for s, _ in choices} - {None} <= set(SYSTEM_PROMPTS)
    with_system = [{"role": "system", "content": "x"}, *messages]
    assert all(on.choose(42, 0, row, with_system)[0] is None for row in range(200))
    off = Preprocessing.from_flags(False, False)
    assert all(off.choose(42, 0, row, messages) == (None, False) for row in range(200))


def test_only_role_and_content_reach_the_template(tokenizer):
    """Like the reference, which rebuilds each turn from role and content: extra keys change nothing."""
    builder = LabelBuilder(tokenizer, 300)
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    extra = [plain[0], {**plain[1], "reasoning_content": "greet back", "tool_calls": [{"name": "x"}]}]
    assert builder.render(extra) == builder.render(plain)
    assert EMPTY_THINK in builder.render(plain)


def test_a_marker_in_a_system_turn_stays_text(tokenizer):
    """The reference expands `<image>` in user and assistant turns only; a row whose images would then not match
    its placeholder runs is refused instead of reaching the model."""
    builder = LabelBuilder(tokenizer, 300)
    messages = [
        {"role": "system", "content": "Look at <image> carefully."},
        {"role": "user", "content": "<image>What is it?"},
        {"role": "assistant", "content": "A cat."},
    ]
    text = builder.render(messages)
    assert "Look at <image> carefully." in text and text.count("<|image_pad|>") == 64
    with pytest.raises(BadRow, match="1 image placeholder run") as caught:
        builder.build(messages, 2)
    assert caught.value.kind == "markers"


def test_tool_rows_keep_their_tools_and_get_no_random_system_prompt(tokenizer):
    functions = [{"name": "get_time", "description": "the time", "parameters": {}}]
    messages = [
        {"role": "system", "content": "Be brief.", "functions": functions},
        {"role": "user", "content": "Time?", "tools": True},
        {"role": "assistant", "content": "Noon."},
    ]
    text = LabelBuilder(tokenizer, 400).render(messages)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools") and '"get_time"' in text
    always = Preprocessing(system_prompt_p=1.0)
    assert always.choose(0, 0, 0, messages[1:])[0] is None
    assert always.choose(0, 0, 0, [messages[1] | {"tools": None}, messages[2]])[0] in SYSTEM_PROMPTS
