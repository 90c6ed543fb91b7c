"""Time and held-out accuracy of `mmv demo`, run exactly as a newcomer runs it, once per seed.

Each run is `mmv demo --out TMP --seed S --json` in a fresh process: wall time includes interpreter start-up, data
synthesis, both training stages and the evaluation. Peak RSS is the largest of the run's processes (the demo and
its DataLoader worker). Every seed runs once per variant: per encoder architecture (`--encoders`, `mmv demo
--encoder`), and for the other tasks per tile count (`--task hires --tiles 1 4`: the same steps, only what the model
sees differs) or per frame count (`--task video --frames 4`).
Usage: python benchmarks/demo.py [--seeds 0 1 2] [--minutes M] [--rows 4000] [--encoders siglip clip dinov2]
                                 [--task shapes|hires|video] [--tiles 1 4] [--frames 4]
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


def run_demo(seed: int, minutes: float | None, rows: int, encoder: str, variant: dict[str, object]) -> dict:
    """One `mmv demo` run; `variant` is {"tiles": N} (--hires), {"frames": N} (--video) or {} (the shapes)."""
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
            *(["--minutes", str(minutes)] if minutes is not None else []),
            "--rows",
            str(rows),
            "--encoder",
            encoder,
            *variant_flags(variant),
            "--json",
        ]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if finished.returncode != 0:
        failure = finished.stderr.strip()[-500:]
        what = " ".join([f"seed {seed}, {encoder} encoder", *variant_flags(variant)])
        raise SystemExit(f"{what}: mmv demo exited {finished.returncode}: {failure}")
    summary = json.loads(finished.stdout)
    return {
        "benchmark": "demo",
        "seed": seed,
        "encoder": encoder,
        **variant,
        "minutes": summary["minutes"],
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


def variant_flags(variant: dict[str, object]) -> list[str]:
    if "tiles" in variant:
        return ["--hires", "--tiles", str(variant["tiles"])]
    if "frames" in variant:
        return ["--video", "--frames", str(variant["frames"])]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=None, help="default: mmv demo's for the task")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--encoders", nargs="+", default=["siglip"], choices=["siglip", "clip", "dinov2"])
    parser.add_argument("--task", default="shapes", choices=["shapes", "hires", "video"])
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 4], help="with --task hires: one run per count")
    parser.add_argument("--frames", type=int, nargs="+", default=[2], help="with --task video: one run per count")
    args = parser.parse_args()
    variants = {
        "shapes": [{}],
        "hires": [{"tiles": n} for n in args.tiles],
        "video": [{"frames": n} for n in args.frames],
    }
    for encoder in args.encoders:
        for variant in variants[args.task]:
            for seed in args.seeds:
                print(json.dumps(run_demo(seed, args.minutes, args.rows, encoder, variant)), flush=True)


if __name__ == "__main__":
    main()
