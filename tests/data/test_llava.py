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


def test_llava_video_records_store_their_checked_videos_and_skip_bad_ones(tmp_path):
    from PIL import Image

    from mmv.data.parquet import iter_rows
    from mmv.data.validate import RowValidator
    from mmv.synth.clips import mp4_bytes

    clip = mp4_bytes([Image.new("RGB", (32, 32), (40 * k, 0, 0)) for k in range(6)])
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.mp4").write_bytes(clip)
    (folder / "cut.mp4").write_bytes(clip[: len(clip) // 2])
    (folder / "a.jpg").write_bytes(jpeg())
    (tmp_path / "outside.mp4").write_bytes(clip)
    records = [
        {"video": "sub/a.mp4", "conversations": turns("<image>\nWhat happens?", "It gets redder.")},
        {"image": "a.jpg", "conversations": turns("<image>\nColour?", "Red.")},
        {"video": "cut.mp4", "conversations": turns("<image>\nWhat happens?", "x")},
        {"video": "gone.mp4", "conversations": turns("<image>\nWhat happens?", "x")},
        {"video": "../outside.mp4", "conversations": turns("<image>\nWhat happens?", "x")},
        {"video": "sub/a.mp4", "conversations": turns("What happens?", "x")},
        {"video": "sub/a.mp4", "image": "a.jpg", "conversations": turns("<image>\nWhat happens?", "x")},
        {"video": ["sub/a.mp4"], "conversations": turns("<image>\nWhat happens?", "x")},
    ]
    source = tmp_path / "llava_video.json"
    source.write_text(json.dumps(records))
    report = convert(source, folder, tmp_path / "out.parquet")
    assert (report.records, report.written) == (8, 2)
    assert report.skipped.counts == {
        "corrupt video": 1,
        "missing video": 1,
        "outside image folder": 1,
        "markers": 1,
        "schema": 2,
    }
    assert "video ../outside.mp4 is outside" in report.skipped.examples[2]
    rows = list(iter_rows(tmp_path / "out.parquet"))
    assert rows[0][1:] == (None, clip) and rows[1][1][:2] == b"\xff\xd8" and rows[1][2] is None
    valid = RowValidator(frames=3).validate(*rows[0][:2], video_bytes=rows[0][2])
    assert len(valid.images) == 3 and valid.messages[1]["content"] == "It gets redder."
    outside = convert(source, folder, tmp_path / "all.parquet", allow_outside=True)
    assert outside.written == 3
