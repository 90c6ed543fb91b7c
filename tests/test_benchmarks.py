"""Every benchmark script starts: a renamed or removed import fails here, not when someone next times a run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_benchmarks_are_found():
    assert len(BENCHMARKS) >= 4, BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_help_runs(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower()


@pytest.mark.slow
def test_the_gpu_script_runs_through_on_the_cpu(tmp_path):
    """`benchmarks/gpu.sh --dry-run`: every step of the GPU session at toy sizes on the CPU, so that session (short
    and rare) never finds a broken step; every step exits 0 and writes its JSON lines under $OUT."""
    script = BENCHMARKS[0].parent / "gpu.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=1500, env=env)
    log = (tmp_path / "log.txt").read_text()
    assert done.returncode == 0, log[-3000:]
    steps = re.findall(r"^== (\S+): exit (\d+)", log, flags=re.MULTILINE)
    assert [name for name, _ in steps] == [
        "tests", "train-stage-batch", "train-fill", "train-compile", "decode-batch-1", "decode-batch-8"
    ]  # fmt: skip
    assert all(rc == "0" for _, rc in steps), log[-3000:]
    assert re.search(r"\d+ tests collected", (tmp_path / "tests.txt").read_text())
    train = [
        json.loads(line)
        for name in ("stage_batch", "fill", "compile")
        for line in open(tmp_path / f"train_{name}.jsonl")
    ]
    assert {(r["stage"], r["features"]) for r in train if r["benchmark"] == "train"} == {
        (stage, features) for stage in ("pretrain", "sft") for features in ("images", "cache")
    }
    assert all(r["projected_epoch_h"] > 0 for r in train if r["benchmark"] == "train")
    decode = [json.loads(line) for line in open(tmp_path / "decode.jsonl")]
    assert [r["batch"] for r in decode] == [1, 8]
