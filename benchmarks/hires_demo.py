"""Held-out shape accuracy on the high-resolution task with and without tiles (`mmv demo --hires`).

Each run is `mmv demo --hires --tiles N --json` in a fresh process, the same seed and steps for every N, so the
only difference is what the model sees: with --tiles 1 the tiny shape is squeezed to a blob of six pixels, with
--tiles 4 each 256-pixel tile shows it at full size. Chance is 1/3 (circle, square, triangle). Usage:
python benchmarks/hires_demo.py [--tiles 1 4] [--minutes 3] [--rows 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(tiles: int, minutes: float, rows: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "mmv.cli.app", "demo", "--hires", "--tiles", str(tiles)]
        command += ["--out", str(Path(tmp) / "demo"), "--minutes", str(minutes), "--rows", str(rows)]
        command += ["--seed", str(seed), "--json"]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"mmv demo --tiles {tiles} failed:\n{finished.stderr[-2000:]}")
    summary = json.loads(finished.stdout)
    return {"tiles": tiles, "accuracy": summary["accuracy"], "steps": summary["steps"], "seconds": round(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--minutes", type=float, default=3.0, help="mmv demo --minutes (steps, not wall time)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for tiles in args.tiles:
        result = run(tiles, args.minutes, args.rows, args.seed)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
