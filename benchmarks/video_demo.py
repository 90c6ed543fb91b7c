"""Held-out accuracy on the video task (`mmv demo --video`): which way a shape moves, which shape appears last.

Each run is `mmv demo --video --frames N --json` in a fresh process, the same seed and steps for every N. With one
frame the model sees a single moment of the clip, so neither question can be answered from it (chance is 1/4 for
the way, 1/3 for the last shape); with four frames it sees the motion and every arrival. Usage:
python benchmarks/video_demo.py [--frames 4] [--minutes 4] [--rows 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(frames: int, minutes: float, rows: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "mmv.cli.app", "demo", "--video", "--frames", str(frames)]
        command += ["--out", str(Path(tmp) / "demo"), "--minutes", str(minutes), "--rows", str(rows)]
        command += ["--seed", str(seed), "--json"]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"mmv demo --video --frames {frames} failed:\n{finished.stderr[-2000:]}")
    summary = json.loads(finished.stdout)
    return {
        "frames": frames,
        "accuracy": summary["accuracy"],
        "by_kind": summary["by_kind"],
        "steps": summary["steps"],
        "phases": summary["seconds"],
        "seconds": round(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[4])
    parser.add_argument("--minutes", type=float, default=4.0, help="mmv demo --minutes (steps, not wall time)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for frames in args.frames:
        result = run(frames, args.minutes, args.rows, args.seed)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
