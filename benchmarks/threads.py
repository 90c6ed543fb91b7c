"""Decode speed by thread setting, on an idle machine and beside a competing busy process.

Each measurement runs in a fresh process (OpenMP reads its wait policy when torch loads): a preset with random
weights, batch 1, text only, greedy, `--new-tokens` tokens after a 32-token prompt, best of `--repeats`. Settings:
- `torch`: torch's own default (one thread per core, OpenMP's default spin-wait): what mmv did before `--threads`.
- `1`, `2`, ...: that many threads.
- `mmv`: mmv's default choice (mmv.threads.default_threads, from the idle cores and the model's size), as `mmv chat`
  makes it after loading.
`GOMP_SPINCOUNT=N python benchmarks/threads.py ...` measures another OpenMP spin-wait (passed to every measurement).
"Loaded" runs `--busy N` processes spinning in pure Python beside each measurement. Usage:
python benchmarks/threads.py [--presets tiny minimind-3v] [--settings torch 1 2 mmv] [--busy 1] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

SPIN = "while True: pass"


def worker(preset_name: str, setting: str, new_tokens: int, repeats: int) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from mmv.config import preset
    from mmv.generate import generate
    from mmv.model.vlm import MiniMindVLM
    from mmv.sampling import SamplingConfig
    from mmv.threads import model_weights, set_threads

    torch.manual_seed(0)
    model = MiniMindVLM(preset(preset_name)).eval()
    if setting == "mmv":
        threads = set_threads(None, weights=model_weights(model))
    elif setting != "torch":
        threads = set_threads(int(setting))
    else:
        threads = torch.get_num_threads()
    prompt = [list(range(100, 132))]
    sampling = SamplingConfig(max_new_tokens=new_tokens, temperature=0.0)
    rates = []
    with torch.inference_mode():
        generate(model, prompt, SamplingConfig(max_new_tokens=4, temperature=0.0))  # warm-up
        for _ in range(repeats):
            result = generate(model, prompt, sampling)
            rates.append(result.decode_tokens_per_s)
    return {"preset": preset_name, "setting": setting, "threads": threads, "decode_tokens_per_s": max(rates)}


def measure(preset_name: str, setting: str, args: argparse.Namespace, busy: int) -> dict:
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)  # the spinners are running before the thread count is chosen
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MMV_THREADS")}
        command = [sys.executable, __file__, "--worker", preset_name, setting]
        command += ["--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return {**json.loads(out), "busy_processes": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "minimind-3v"])
    parser.add_argument("--settings", nargs="+", default=["torch", "1", "2", "mmv"])
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the loaded runs")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("PRESET", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.new_tokens, args.repeats)))
        return
    rows = []
    for preset_name in args.presets:
        for busy in (0, args.busy):
            for setting in args.settings:
                row = measure(preset_name, setting, args, busy)
                rows.append(row)
                print(
                    f"{preset_name:12s} busy={busy} {setting:>5s} ({row['threads']} threads): "
                    f"{row['decode_tokens_per_s']:9.1f} tok/s",
                    file=sys.stderr,
                )
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "runs": rows}))


if __name__ == "__main__":
    main()
