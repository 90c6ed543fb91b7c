"""LLaVA conversion: every converted conversation passes the checks training makes, or is skipped by kind."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from mmv.data.llava import convert
from mmv.data.rows import parse_row
from tests.data.parquet_files import jpeg


def turns(*values: str, system: str | None = None) -> list[dict]:
    speakers = ("human", "gpt")
    found = [{"from": speakers[i % 2], "value": v} for i, v in enumerate(values)]
    return ([{"from": "system", "value": system}] if system is not None else []) + found


def test_records_training_would_skip_are_skipped_by_kind(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg())
    records = [
        {"image": "a.jpg", "conversations": turns("<image>\nColour?", "Red.")},
        {"image": "a.jpg", "conversations": turns("<image>\nColour?", "Red.", system="See <image>.")},
        {"image": "a.jpg", "conversations": turns("<image>\nIs <|image_pad|> text?", "Yes.")},
        {"conversations": turns("Say \ud800.", "No.")},
        {"conversations": turns("Only a question?")},
        {"image": 7, "conversations": turns("<image>\nColour?", "Red.")},
        {"image": "a.jpg", "conversations": turns("Colour?", "Red.")},
    ]
    source = tmp_path / "llava.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    report = convert(source, tmp_path / "images", tmp_path / "out.parquet")
    assert (report.records, report.written) == (7, 1)
    assert report.skipped.counts == {"markers": 3, "unicode": 1, "schema": 2}
    assert report.skipped.examples[0].startswith("record 1 (markers: an <image> marker outside the content")
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [parse_row(r["conversations"], r["image_bytes"])[0][1]["content"] for r in table] == ["Red."]
