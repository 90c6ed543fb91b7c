"""Memory is bounded by the window, not the file: peak RSS of a full pass over N rows vs 10 N rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.data.parquet_files import image_row, make_spec

PAYLOAD = 6000  # incompressible bytes per row: 10x the rows is ~75 MB more file

# VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked parent across exec on Linux
PASS = """
import json, re, sys
from pathlib import Path
from mmv.data.loader import DataSpec, TrainData
data = TrainData(DataSpec(**json.loads(sys.argv[1])))
count = sum(batch.num_samples for batch in data.batches(0, 0, 64))
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"rows": count, "used": data.rows_read - data.skips.total,
                  "peak_mb": peak_kb / 1024}))
"""


def write_rows(path: Path, count: int) -> Path:
    """Text rows whose stored placeholder image is a large random payload (dropped unread, as text rows are), one
    image row in 50; everything in a single row group, the hardest case for streaming."""
    text = json.dumps([{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}])
    image = image_row(0)
    conversations = [image["conversations"] if i % 50 == 0 else text for i in range(count)]
    payloads = [image["image_bytes"] if i % 50 == 0 else os.urandom(PAYLOAD) for i in range(count)]
    pq.write_table(pa.table({"conversations": conversations, "image_bytes": payloads}), path, row_group_size=count)
    return path


def full_pass(path: Path) -> subprocess.Popen:
    spec = make_spec([path], block_rows=256, window_rows=2048)
    return subprocess.Popen(
        [sys.executable, "-c", PASS, json.dumps(vars(spec))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_rss_does_not_grow_with_the_file(tmp_path):
    small, large = write_rows(tmp_path / "small.parquet", 1500), write_rows(tmp_path / "large.parquet", 15000)
    grown_mb = (large.stat().st_size - small.stat().st_size) / 2**20
    assert grown_mb > 60
    passes = [full_pass(small), full_pass(large)]  # side by side: each process measures only itself
    before, after = (result(p) for p in passes)
    assert (before["rows"], after["rows"]) == (1500, 15000)
    assert before["used"] == 1500 and after["used"] == 15000
    # a loader that held the row group (or the file) would grow by about grown_mb
    assert after["peak_mb"] - before["peak_mb"] < 15, (before, after, grown_mb)
