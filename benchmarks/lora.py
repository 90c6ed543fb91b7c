"""LoRA against full fine-tuning: what it costs (memory, trainable parameters, step time) and what it keeps (accuracy).

cost: the minimind-3v preset with a full-size random p32-256 SigLIP encoder, `mmv sft` for a few steps as full SFT
(--freeze none), --lora 8 and --lora 64 (and --lora 8 --qlora on request), on the CPU or CUDA. Each mode runs in a
fresh process, so its peak RSS (and on CUDA its peak allocated memory) is its own; the step time is the median of
the logged steps after the first (warm-up).

quality: the offline demo's task (`mmv demo`: synthetic shapes, colour / shape / count questions). The demo's
pretrain stage is run once (as `mmv demo` runs it); from that model, the demo's full SFT (everything trains) and a
LoRA SFT (adapters on every linear layer + the projector; the encoder frozen) run the same steps and are scored on
the same held-out questions. Not timing-sensitive: the step counts follow from --minutes, not from the clock.

Usage: python benchmarks/lora.py cost [--steps 6] [--batch-size 4] [--threads N] [--tokenizer DIR] [--device cuda]
                                      [--modes full,lora-8,lora-64,qlora-8]
       python benchmarks/lora.py quality [--minutes 8] [--rows 4000] [--rank 8] [--lora-lr 3e-3] [--work DIR]
Each result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT.parent / "shared" / "minimind_tokenizer"
COST_MODES = {
    "full": {"freeze": "none"},
    "lora-8": {"lora": 8},
    "lora-64": {"lora": 64},
    "qlora-8": {"lora": 8, "qlora": True},
}


# --- cost ------------------------------------------------------------------------------------------------------------


def cost_inputs(work: Path, tokenizer: Path, rows: int) -> tuple[Path, Path, Path]:
    """A random minimind-3v VLM (.pth), a full-size random encoder, and SFT data (from benchmarks/train.py)."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mmv.config import preset
    from mmv.model.vlm import MiniMindVLM
    from train import full_size_encoder, write_dataset

    encoder = full_size_encoder(work / "encoder")
    torch.manual_seed(0)
    model = MiniMindVLM(preset("minimind-3v"))
    model.init_fresh_weights()
    base = work / "base.pth"
    torch.save({k: v.clone() for k, v in model.checkpoint_state_dict().items()}, base)
    data = work / "sft.parquet"
    write_dataset(data, "sft", rows, str(tokenizer))
    return base, encoder, data


def cost_one(mode: str, base: Path, encoder: Path, data: Path, tokenizer: Path, out: Path, args: Any) -> dict:
    """One mode in this process: a short `mmv sft` through the Python API, then this process's peak RSS."""
    import torch

    from mmv.train.config import stage_config
    from mmv.train.run import RunRequest, run
    from mmv.train.state import checkpoint_paths, load_resume

    torch.set_num_threads(args.threads)
    cfg = stage_config(
        "sft",
        init=str(base),
        batch_size=args.batch_size,
        max_steps=args.steps,
        max_seq_len=768,
        log_every=1,
        save_every=10**9,
        device=args.device,
        lr=1e-4,
        **COST_MODES[mode],
    )
    request = RunRequest(
        cfg=cfg,
        out=out,
        data=[str(data)],
        vision=str(encoder),
        tokenizer=str(tokenizer),
        data_options={"random_system_prompt": False, "drop_empty_think": False},
    )
    summary = run(request, "sft")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [args.batch_size / r["samples_per_s"] for r in records[1:]]
    trainable = sum(t.numel() for t in load_resume(checkpoint_paths(out)[-1]).model.values())
    return {
        "benchmark": "lora-cost",
        "mode": mode,
        "trainable_params": trainable,
        "device": args.device,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.device == "cuda" else None,
        "step_s_median": round(statistics.median(step_s), 3),
        "steps_timed": len(step_s),
        "batch_size": args.batch_size,
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in records[1:]), 1),
        "loss_last": summary["loss"],
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def cost(args: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, encoder, data = cost_inputs(work, args.tokenizer, rows=args.batch_size * (args.steps + 1))
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "cost-one", mode, str(base), str(encoder), str(data)]
            command += [str(args.tokenizer), str(work / mode), str(args.steps), str(args.batch_size), str(args.threads)]
            command += [args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{mode}: exited {done.returncode}: {done.stderr.strip()[-1500:]}")
            print(done.stdout.strip().splitlines()[-1], flush=True)


# --- quality ---------------------------------------------------------------------------------------------------------


def lora_stage(out: Path, data: Path, init: Path, vision: Path, tokenizer: Path, steps: int, args: Any) -> dict:
    """The demo's SFT stage with adapters: same data, steps, batch and schedule; the encoder stays frozen."""
    from mmv.demo import DemoConfig, train_stage

    demo = DemoConfig(seed=args.seed, minutes=args.minutes, n=args.rows)
    return train_stage("sft", out, data, init, vision, tokenizer, steps, args.lora_lr, demo, lora=args.rank)


def score(run_dir: Path, eval_file: Path) -> dict:
    from mmv.eval.runner import EvalConfig, evaluate
    from mmv.loading import load_model

    loaded = load_model(run_dir, device="cpu", dtype="float32")
    report = evaluate(loaded, [eval_file], EvalConfig(batch_size=32, max_new_tokens=24), None)
    return report.summary()


def parameter_counts(run_dir: Path) -> tuple[int, int, int, int]:
    """(trainable, trainable outside the encoder, all but the encoder, all); trainable from the last checkpoint."""
    from mmv.loading import load_model
    from mmv.train.state import checkpoint_paths, load_resume

    trained = load_resume(checkpoint_paths(run_dir)[-1]).model
    trainable = sum(t.numel() for t in trained.values())
    outside = sum(t.numel() for name, t in trained.items() if not name.startswith("vision_encoder."))
    model = load_model(run_dir, device="cpu", dtype="float32").model
    encoder = sum(p.numel() for p in model.vision_encoder.parameters()) if model.vision_encoder else 0
    total = sum(p.numel() for p in model.parameters())  # a tied lm_head is the embedding: counted once
    return trainable, outside, total - encoder, total


def quality(args: Any) -> None:
    import torch

    from mmv.demo import DemoConfig, make_start_weights, train_stage
    from mmv.layout import VISION_SUBFOLDER
    from mmv.synth.dataset import SynthConfig, synthesize
    from mmv.synth.encoder import TinyEncoderConfig, make_encoder

    torch.set_num_threads(1)  # as the demo: tiny tensors, bit-reproducible
    config = DemoConfig(seed=args.seed, minutes=args.minutes, n=args.rows)
    pretrain_steps, sft_steps = config.steps
    with tempfile.TemporaryDirectory() as tmp:
        out = args.work or Path(tmp)
        data = synthesize(out / "data", SynthConfig(n=config.n, eval_n=config.eval_n, seed=config.seed))
        assert data.tokenizer is not None and data.vocab_size is not None
        make_encoder(out / "encoder", TinyEncoderConfig(hidden_size=config.encoder_hidden, seed=config.seed))
        start = make_start_weights(out, data.vocab_size, config.seed)
        common = (data.tokenizer, pretrain_steps, config.pretrain_lr, config)
        train_stage("pretrain", out / "pretrain", data.files["pretrain"], start, out / "encoder", *common)
        pretrained, encoder = out / "pretrain", out / "pretrain" / VISION_SUBFOLDER
        sft = data.files["sft"]
        train_stage("sft", out / "full", sft, pretrained, encoder, data.tokenizer, sft_steps, config.sft_lr, config)
        lora_stage(out / "lora", sft, pretrained, encoder, data.tokenizer, sft_steps, args)
        results = {}
        for name in ("full", "lora"):
            trainable, outside_encoder, without_encoder, total = parameter_counts(out / name)
            summary = score(out / name, data.files["eval"])
            results[name] = {
                "accuracy": summary["accuracy"],
                "correct": f"{summary['correct']}/{summary['evaluated']}",
                "answer_loss": round(summary["mean_loss"], 4),
                "trainable_params": trainable,
                "trainable_of_all": round(trainable / total, 4),
                "trainable_of_llm_and_projector": round(outside_encoder / without_encoder, 4),
            }
    print(
        json.dumps(
            {
                "benchmark": "lora-quality",
                "seed": args.seed,
                "minutes": args.minutes,
                "rows": args.rows,
                "steps": {"pretrain": pretrain_steps, "sft": sft_steps},
                "rank": args.rank,
                "lora_lr": args.lora_lr,
                **results,
                "lora_over_full_accuracy": (
                    round(results["lora"]["accuracy"] / results["full"]["accuracy"], 4)
                    if results["full"]["accuracy"]
                    else None
                ),
            }
        ),
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "cost-one":  # the child process of `cost`
        mode, base, encoder, data, tokenizer, out, steps, batch, threads, device = sys.argv[2:12]
        args = argparse.Namespace(steps=int(steps), batch_size=int(batch), threads=int(threads), device=device)
        paths = (Path(base), Path(encoder), Path(data), Path(tokenizer), Path(out))
        print(json.dumps(cost_one(mode, *paths, args)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timed = commands.add_parser("cost")
    timed.add_argument("--steps", type=int, default=6)
    timed.add_argument("--batch-size", type=int, default=4)
    timed.add_argument("--threads", type=int, default=torch_threads())
    timed.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    timed.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    timed.add_argument("--modes", default="full,lora-8,lora-64", help=f"Any of {','.join(COST_MODES)}.")
    scored = commands.add_parser("quality")
    scored.add_argument("--minutes", type=float, default=8.0)
    scored.add_argument("--rows", type=int, default=4000)
    scored.add_argument("--seed", type=int, default=0)
    scored.add_argument("--rank", type=int, default=8)
    scored.add_argument("--lora-lr", type=float, default=3e-3)
    scored.add_argument("--work", type=Path, help="Keep the data, runs and models in this new folder.")
    args = parser.parse_args()
    cost(args) if args.command == "cost" else quality(args)


def torch_threads() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
