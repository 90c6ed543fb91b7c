"""--show-sample rendering: supervised spans marked, image runs collapsed, packed samples found."""

from __future__ import annotations

import pytest

from mmv.data.loader import TrainData
from mmv.errors import MmvError
from tests.data.parquet_files import LABELS_DIR, make_spec


@pytest.mark.parametrize("pack", [False, True])
def test_render_marks_answers_and_collapses_images(pack):
    spec = make_spec(
        [LABELS_DIR / "multi.parquet", LABELS_DIR / "single.parquet"],
        pack=pack,
        max_seq_len=400,
        random_system_prompt=False,
        drop_empty_think=False,
    )
    data = TrainData(spec)
    [batch] = list(data.batches(0, 0, 12))
    texts = {batch.rows[i]: data.render(batch, i) for i in range(len(batch.rows))}
    assert sorted(texts) == list(range(12))
    multi = texts[0]  # row 0 of multi.parquet: two images, one answer
    assert multi.startswith("--- sample ") and "row 0 of multi.parquet, 173 tokens, 2 image(s), 23 supervised" in multi
    assert multi.count("[image: 64 tokens]") == 2 and "<|image_pad|>" not in multi
    assert multi.endswith(
        "<|im_start|>assistant\n⟦<think>\n\n</think>\n\nThe first is a yellow square, the second "
        "a blue square.<|im_end|>\n⟧"
    )
    two_turns = texts[3 + 1]  # row 1 of single.parquet: two answers, each marked on its own
    assert two_turns.count("⟦") == two_turns.count("⟧") == 2
    assert "<|im_start|>user\nAnd its color?<|im_end|>\n<|im_start|>assistant\n⟦" in two_turns
    system = texts[3 + 2]
    assert "0 image(s)" in system and "⟦" not in system.split("<|im_start|>assistant\n")[0]


def test_render_refuses_a_sample_outside_the_batch():
    data = TrainData(make_spec([LABELS_DIR / "multi.parquet"]))
    [batch] = list(data.batches(0, 0, 3))
    with pytest.raises(MmvError, match="sample 3 is not in this batch, which holds 3"):
        data.render(batch, 3)
