"""The synthetic dataset: deterministic for a seed, in the published schema, every row usable, held-out unseen."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmv.data.rows import parse_row
from mmv.images import open_image
from mmv.synth.captions import QUESTION_KINDS, QUESTIONS
from mmv.synth.dataset import SynthConfig, synthesize

CONFIG = SynthConfig(n=120, eval_n=30, seed=3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, CONFIG, tokenizer=False)
    return out


def read(path):
    table = pq.read_table(path)
    return table, list(
        zip(table.column("conversations").to_pylist(), table.column("image_bytes").to_pylist(), strict=True)
    )


def test_same_seed_same_files_other_seed_other_files(synth_dir, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    synthesize(again, CONFIG, tokenizer=False)
    synthesize(other, SynthConfig(n=120, eval_n=30, seed=4), tokenizer=False)
    for split in ("pretrain", "sft", "eval"):
        assert read(synth_dir / f"{split}.parquet")[1] == read(again / f"{split}.parquet")[1]
        assert read(synth_dir / f"{split}.parquet")[1] != read(other / f"{split}.parquet")[1]


def test_published_schema_and_every_row_parses(synth_dir):
    kinds = {"text-only": 0, "two-image": 0, "multi-turn": 0}
    for split, rows in (("pretrain", 120), ("sft", 120), ("eval", 30)):
        table, data = read(synth_dir / f"{split}.parquet")
        assert table.num_rows == rows
        assert table.schema.field("conversations").type == pa.string()
        # several images in some training rows need the list layout; the held-out set is plain binary
        expected = pa.binary() if split == "eval" else pa.list_(pa.binary())
        assert table.schema.field("image_bytes").type == expected
        for conversations, image_bytes in data:
            messages, images = parse_row(conversations, image_bytes)
            assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
            for image in images:
                assert open_image(image).size == (256, 256)
            kinds["text-only"] += not images
            kinds["two-image"] += len(images) == 2
            kinds["multi-turn"] += len(messages) > 2
    assert all(count > 0 for count in kinds.values()), kinds


def test_eval_asks_colour_shape_count_about_unseen_images(synth_dir):
    seen = set()
    for split in ("pretrain", "sft"):
        for _, images in read(synth_dir / f"{split}.parquet")[1]:
            seen.update(hashlib.sha256(image).hexdigest() for image in images)
    asked = {kind: 0 for kind in QUESTION_KINDS}
    for conversations, image in read(synth_dir / "eval.parquet")[1]:
        assert hashlib.sha256(image).hexdigest() not in seen
        last_question = json.loads(conversations)[-2]["content"].removeprefix("<image>\n")
        kind = next(k for k in QUESTION_KINDS if last_question in QUESTIONS[k])
        asked[kind] += 1
    assert asked == {"colour": 10, "shape": 10, "count": 10}


def test_generation_prompt_tokenises_as_in_training(tmp_path):
    """Prompt ids + answer ids must equal the training ids of the same turn: a tokenizer that merged the newlines
    after `</think>` would show the model a token at inference that it never saw before an answer."""
    from mmv.tokenizer import encode, load_tokenizer, render_chat

    result = synthesize(tmp_path, SynthConfig(n=60, eval_n=3, seed=0))
    tok = load_tokenizer(result.tokenizer)
    _, data = read(result.files["sft"])
    for conversations, _ in data[:20]:
        messages = json.loads(conversations)
        prompt = encode(tok, render_chat(tok, messages[:-1]))
        answer = encode(tok, messages[-1]["content"])
        full = encode(tok, render_chat(tok, messages, add_generation_prompt=False))
        assert full == [*prompt, *answer, tok.eos_token_id, *encode(tok, "\n")]
