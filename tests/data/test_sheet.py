"""The contact sheet marks a row unusable exactly when the row validator (without a tokenizer) refuses it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmv.data.sheet import SheetLayout, contact_sheet, render_cell
from mmv.errors import MmvError
from tests.data.parquet_files import BAD_ROWS, image_row, text_row, write_parquet


def test_cells_follow_the_validator():
    layout = SheetLayout(thumb=64)
    good = image_row(3)
    picture, caption, usable = render_cell(0, good["conversations"], good["image_bytes"], layout)
    assert usable and caption == "#0 Q: What is picture 3?\nA: Picture 3 is a square." and picture.size == (64, 64)
    text = text_row(1)
    assert render_cell(1, text["conversations"], text["image_bytes"], layout)[2]
    row, _, reason = BAD_ROWS["marker in a system turn"]
    picture, caption, usable = render_cell(2, row["conversations"], row["image_bytes"], layout)
    assert not usable and caption.startswith("#2 an <image> marker outside") and reason in caption


def test_the_sheet_reads_only_the_first_rows_and_never_overwrites_its_input(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", [image_row(i) for i in range(5)])
    assert contact_sheet(path, tmp_path / "sheet.png", rows=3) == 3
    with pytest.raises(MmvError, match="is the input"):
        contact_sheet(path, path)
    empty = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table({"conversations": pa.array([], pa.string()), "image_bytes": pa.array([], pa.binary())}), empty
    )
    with pytest.raises(MmvError, match="holds no rows"):
        contact_sheet(empty, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_a_video_row_shows_its_frames_and_a_bad_video_is_marked(tmp_path):
    import json

    from PIL import Image

    from mmv.data.writer import ParquetRows
    from mmv.synth.clips import mp4_bytes

    turns = [{"role": "user", "content": "<image>\nWhat happens?"}, {"role": "assistant", "content": "It moves."}]
    clip = mp4_bytes([Image.new("RGB", (32, 32), (200, 30 * k, 30)) for k in range(8)])
    layout = SheetLayout(thumb=64)
    picture, caption, usable = render_cell(0, json.dumps(turns), None, layout, video_bytes=clip)
    assert usable and picture.size == (64, 64)  # the eight frames side by side
    assert caption.startswith("#0 Q: Frame 1 at 0.0 s: Frame 2 at 0.2 s:")
    assert caption.endswith("What happens?\nA: It moves.")
    assert not render_cell(1, json.dumps(turns), None, layout, video_bytes=b"no video")[2]
    with ParquetRows(tmp_path / "v.parquet", video=True) as out:
        out.add(turns, [], clip)
    assert contact_sheet(tmp_path / "v.parquet", tmp_path / "sheet.png") == 1
