"""`mmv eval` with tiles: images of different grids in one left-padded batch answer as they do one at a time."""

from __future__ import annotations

import json

from mmv.eval.runner import EvalConfig, evaluate
from tests.conftest import load_p32_for_chat, one_thread
from tests.data.parquet_files import write_parquet
from tests.data.test_tiled_rows import png


def test_batched_tiled_eval_matches_one_at_a_time(tmp_path):
    sizes = [(512, 512), (200, 150), (1024, 256)]  # 2x2, one view, 1x4: five, one and five runs
    rows = [
        {
            "conversations": json.dumps(
                [{"role": "user", "content": f"<image>\nWhat is picture {k}?"}, {"role": "assistant", "content": "x"}]
            ),
            "image_bytes": png(*size),
        }
        for k, size in enumerate(sizes)
    ]
    data = write_parquet(tmp_path / "eval.parquet", rows)
    loaded = load_p32_for_chat(tiles=4)
    records = {}
    with one_thread():
        for batch in (1, 3):
            out = tmp_path / f"batch{batch}.jsonl"
            report = evaluate(loaded, [data], EvalConfig(batch_size=batch, max_new_tokens=6), out)
            assert report.evaluated == 3
            records[batch] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prediction"] for r in records[1]] == [r["prediction"] for r in records[3]]
    for one, batched in zip(records[1], records[3], strict=True):
        assert abs(one["loss"] - batched["loss"]) < 1e-4
