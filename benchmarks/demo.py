"""Time and held-out accuracy of `mmv demo`, run exactly as a newcomer runs it, once per seed.

Each run is `mmv demo --out TMP --seed S --json` in a fresh process: wall time includes interpreter start-up, data
synthesis, both training stages and the evaluation. Peak RSS is the largest of the run's processes (the demo and
its DataLoader worker). With --encoders, every seed runs once per encoder architecture (`mmv demo --encoder`).
Usage: python benchmarks/demo.py [--seeds 0 1 2] [--minutes 8] [--rows 4000] [--encoders siglip clip dinov2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(seed: int, minutes: float, rows: int, encoder: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "mmv.cli.app",
            "demo",
            "--out",
            str(Path(tmp) / "demo"),
            "--seed",
            str(seed),
            "--minutes",
            str(minutes),
            "--rows",
            str(rows),
            "--encoder",
            encoder,
            "--json",
        ]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if finished.returncode != 0:
        failure = finished.stderr.strip()[-500:]
        raise SystemExit(f"seed {seed}, {encoder} encoder: mmv demo exited {finished.returncode}: {failure}")
    summary = json.loads(finished.stdout)
    return {
        "benchmark": "demo",
        "seed": seed,
        "encoder": encoder,
        "minutes": minutes,
        "rows": rows,
        "wall_s": round(wall, 1),
        "phase_s": summary["seconds"],
        "steps": summary["steps"],
        "accuracy": summary["accuracy"],
        "by_kind": {kind: f"{v['correct']}/{v['total']}" for kind, v in summary["by_kind"].items()},
        "answer_perplexity": round(summary["eval"]["perplexity"], 4),
        # children's maximum, so far: with runs in sequence it is the largest run's peak
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--encoders", nargs="+", default=["siglip"], choices=["siglip", "clip", "dinov2"])
    args = parser.parse_args()
    for encoder in args.encoders:
        for seed in args.seeds:
            print(json.dumps(run_demo(seed, args.minutes, args.rows, encoder)), flush=True)


if __name__ == "__main__":
    main()
