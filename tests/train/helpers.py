"""Training test helpers: small parquet files in the published schema, the tiny fixture encoder and tokenizer,
and `mmv` run as a real subprocess (one torch thread: deterministic and kind to a shared CPU)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REFERENCE, TOKENIZER_DIR

VISION_DIR = REFERENCE / "p32" / "vision"
LLM_PTH = REFERENCE / "p32" / "llm.pth"
VLM_PTH = REFERENCE / "p32" / "model.pth"
WORDS = ("red", "blue", "green", "square", "circle", "small", "large", "left", "right", "top")


def png(color: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def caption_row(index: int, words: int = 6) -> dict[str, Any]:
    """An image and a caption that names its colour, so the model has something to learn."""
    color = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    answer = " ".join(WORDS[(index + k * 3) % len(WORDS)] for k in range(words))
    conversations = [
        {"role": "user", "content": "<image>\nDescribe the picture."},
        {"role": "assistant", "content": f"{answer} {color[0]}."},
    ]
    return {"conversations": json.dumps(conversations), "image_bytes": png(color)}


def text_row(index: int) -> dict[str, Any]:
    """Text-only, as the dataset stores it: a small black placeholder image and no <image> marker."""
    conversations = [
        {"role": "user", "content": f"Count to {index % 5 + 2}."},
        {"role": "assistant", "content": " ".join(str(k) for k in range(1, index % 5 + 3))},
    ]
    return {"conversations": json.dumps(conversations), "image_bytes": png((0, 0, 0), 8)}


def write_parquet(path: Path, rows: list[dict[str, Any]], row_group_size: int = 16) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=row_group_size)
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def base_args(data: Path, out: Path) -> list[str]:
    """A tiny sft run from the fixture VLM; every number small."""
    return [
        "sft",
        "--data",
        str(data),
        "--out",
        str(out),
        "--vision",
        str(VISION_DIR),
        "--tokenizer",
        str(TOKENIZER_DIR),
        "--freeze",
        "none",
        "--lr",
        "1e-3",
        "--no-random-system-prompt",
        "--keep-empty-think",
    ]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(args: list[str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmv.cli.app", *args],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def mmv(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmv.cli.app", *args], env=env(), capture_output=True, text=True, timeout=timeout
    )


def run_cli(args: list[str]) -> Any:
    """The real Typer app in-process (no interpreter start-up); result has exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from mmv.cli.app import _lift_global_flags, app

    return CliRunner().invoke(app, _lift_global_flags(list(args)), catch_exceptions=False)


def wait_for_step(run: Path, step: int, process, timeout: float = 180) -> None:
    """Until metrics.jsonl shows `step` (the process must still be running then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early: {process.communicate()[1][-2000:]}"
        try:
            lines = (run / "metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if any(line.startswith(f'{{"step": {step},') for line in lines):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")
