"""Training throughput of `mmv pretrain` / `mmv sft`: padded to the longest, packed, and padded to the max length.

The minimind-3v preset (random weights) with a full-size random p32-256 SigLIP encoder, on a synthetic parquet whose
conversation lengths spread like the real data (most between 100 and 400 tokens, a tail up to 700, 64 of them the
image). The same samples are trained three ways: padded to the longest sample of each batch (mmv's default), packed
several to a row (--pack), and padded to the max length (the reference's way). Batches are built ahead of the timed
steps, so the figures are the trainer's (forward, backward, AdamW); the loader's own rate is reported beside them.

Useful tokens are non-padding tokens. MFU = the model FLOPs those tokens need (forward + the backward that the
freeze mode requires; padding is not model work) / time / the machine's measured matmul peak in the compute dtype.

Each stage runs twice (--features): with the images decoded, processed and encoded every step (the encoder's
forward counts as model work), and with a feature cache built first (`mmv data cache-features`; the model has no
encoder, the loader decodes no JPEG). The projected epoch time is the published dataset's rows at the measured
samples/s. On CUDA the peak memory of a step at the max length is measured beside the start-of-run estimate.

Usage: python benchmarks/train.py [--stages pretrain sft] [--features images cache] [--modes ...] [--steps 3]
       [--warmup 1] [--batch-size N | --fill-memory 0.5] [--device cpu|cuda] [--dtype float32|bfloat16]
       [--rows 512] [--tokenizer DIR] [--threads N] [--compile] [--preset minimind-3v] [--encoder-layers 12]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmv.config import VLMConfig, preset
from mmv.data.batch import Batch
from mmv.data.feature_build import build_feature_cache
from mmv.data.loader import DataSpec, TrainData
from mmv.device import DTYPES, pick_dtype
from mmv.model.vision import load_encoder
from mmv.model.vlm import MiniMindVLM
from mmv.train.config import stage_config
from mmv.train.distributed import DistContext
from mmv.train.memory import estimate
from mmv.train.trainer import Trainer

MODES = ("max-length", "longest", "packed")
# the synthetic conversations' vocabulary: English and Chinese words, as the published data mixes both
WORDS = (
    "the picture shows a small red house beside large green tree under bright blue sky with white clouds and two "
    "people walking along road 图中 一只 猫 坐在 窗台 上 阳光 照进 房间"
).split()
ENCODER_TOKENS = 64  # p32-256: an 8x8 grid per image
REAL_ROWS = {"pretrain": 1_270_000, "sft": 2_900_000}  # the published datasets' rows, for the projected epoch time
REFERENCE_EPOCH_H = {"sft": 2.0}  # the reference's claim: one SFT epoch in about 2 hours on one RTX 3090


def sample_length(rng: random.Random) -> int:
    """Total tokens of a sample: most between 100 and 400, a tail up to 700 (the published data's spread)."""
    return rng.randint(100, 400) if rng.random() < 0.85 else rng.randint(400, 700)


def jpeg(rng: random.Random) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_dataset(path: Path, stage: str, rows: int, tokenizer_dir: str, seed: int = 0) -> None:
    """Rows of the published schema whose rendered length follows `sample_length`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmv.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    per_word = len(tokenizer(" ".join(WORDS * 4), add_special_tokens=False)["input_ids"]) / (4 * len(WORDS))
    rng = random.Random(seed)
    images = [jpeg(rng) for _ in range(16)]  # distinct images, reused: decoding cost is what matters

    def text(tokens: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(1, int(tokens / per_word))))

    conversations, image_bytes = [], []
    for _ in range(rows):
        budget = sample_length(rng) - ENCODER_TOKENS - 20  # the template's own tokens
        if stage == "pretrain":
            turns = [("<image>\n" + text(8), text(budget - 8))]
        else:
            first = budget // 3
            turns = [
                ("<image>\n" + text(first // 3), text(first - first // 3)),
                (text((budget - first) // 4), text(budget - first - (budget - first) // 4)),
            ]
        messages = [
            m
            for user, assistant in turns
            for m in ({"role": "user", "content": user}, {"role": "assistant", "content": assistant})
        ]
        conversations.append(json.dumps(messages, ensure_ascii=False))
        image_bytes.append(rng.choice(images))
    table = pa.table({"conversations": conversations, "image_bytes": image_bytes})
    pq.write_table(table, str(path), row_group_size=256)


def full_size_encoder(folder: Path, layers: int = 12) -> Path:
    from mmv.synth.encoder import TinyEncoderConfig, make_encoder

    config = TinyEncoderConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=layers, num_attention_heads=12
    )
    return make_encoder(folder, config)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large square matmul: the best of several runs."""
    n = 8192 if device.type == "cuda" else 1536
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(8 if device.type == "cuda" else 4):
        sync(device)
        start = time.perf_counter()
        for _ in range(4 if device.type == "cuda" else 1):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / (4 if device.type == "cuda" else 1))
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sample_flops(config: VLMConfig, length: int, images: int, freeze: str, encoder_params: int) -> float:
    """Model FLOPs to train on one sample of `length` tokens (forward + the backward its freeze mode needs).

    Frozen blocks still pass gradients down to the projector (backward = 1x forward); trainable ones also make
    weight gradients (2x). The frozen encoder runs forward only.
    """
    hidden, inter, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    attn_width = config.num_attention_heads * config.head_dim
    kv_width = config.num_key_value_heads * config.head_dim
    mlp = 3 * hidden * inter * (config.num_experts_per_tok if config.use_moe else 1)
    block = 2 * (hidden * attn_width * 2 + hidden * kv_width * 2 + mlp) * length + 2 * attn_width * length**2
    layers = config.num_hidden_layers
    trainable = {"projector": 0, "ends": min(2, layers), "none": layers}[freeze]
    llm = block * (trainable * 3 + (layers - trainable) * 2)
    head = 2 * hidden * vocab * length * (3 if freeze == "none" else 2)
    tokens = images * config.image_token_len
    projector = 2 * (config.projector_input_size * hidden + hidden * hidden) * tokens * 3
    encoder = 2 * encoder_params * images * ENCODER_TOKENS
    return float(llm + head + projector + encoder)


def pad_to(batch: Batch, length: int) -> Batch:
    """The reference's layout: every row padded to the max length."""
    extra = length - batch.input_ids.shape[1]
    pad = torch.nn.functional.pad
    return Batch(
        input_ids=pad(batch.input_ids, (0, extra), value=0),
        labels=pad(batch.labels, (0, extra), value=-100),
        pixel_inputs=batch.pixel_inputs,
        image_features=batch.image_features,
        num_images=batch.num_images,
        num_samples=batch.num_samples,
        rows=batch.rows,
    )


def sample_lengths(batch: Batch) -> list[int]:
    if batch.segment_ids is None:
        return [int(n) for n in (batch.input_ids != 0).sum(1)]
    return [int(n) for row in batch.segment_ids for n in torch.unique(row[row >= 0], return_counts=True)[1]]


def load_batches(spec: DataSpec, mode: str, count: int, batch_size: int) -> tuple[list[Batch], float]:
    """`count` batches of the mode, and the loader's samples/s building them (one process, no workers)."""
    data = TrainData(spec)
    start = time.perf_counter()
    batches = []
    for batch in data.batches(0, 0, batch_size):
        batches.append(pad_to(batch, spec.max_seq_len) if mode == "max-length" else batch)
        if len(batches) == count:
            break
    return batches, sum(b.num_samples for b in batches) / (time.perf_counter() - start)


def timed_step(trainer: Trainer, batch: Batch) -> float:
    sync(trainer.ctx.device)
    start = time.perf_counter()
    trainer.step([batch], trainer.plan([batch], False))
    sync(trainer.ctx.device)
    return time.perf_counter() - start


def figures(trainer: Trainer, batches: list[Batch], times: list[float], freeze: str, encoder_params: int) -> dict:
    config = trainer.model.config
    samples = sum(b.num_samples for b in batches)
    tokens = sum(b.num_tokens for b in batches)
    slots = sum(b.input_ids.numel() for b in batches)
    flops = 0.0
    for batch in batches:
        lengths = sample_lengths(batch)
        per_image = round(batch.num_images / max(len(lengths), 1))
        flops += sum(sample_flops(config, n, per_image, freeze, encoder_params) for n in lengths)
    seconds = sum(times)
    return {
        "samples_per_s": samples / seconds,
        "tokens_per_s": tokens / seconds,
        "padding": 1 - tokens / slots,
        "step_s": statistics.median(times),
        "flops_per_s": flops / seconds,
        "rows_per_batch": statistics.mean(b.input_ids.shape[0] for b in batches),
    }


def fill_batch_size(stage: str, model: MiniMindVLM, device: torch.device, fraction: float, dtype: torch.dtype) -> int:
    """The largest power of two whose start-of-run memory estimate (the one `mmv sft` prints) fits `fraction` of the
    GPU's memory: a batch that fills the GPU without risking an out-of-memory error in a short session."""
    max_seq_len = stage_config(stage).max_seq_len
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("vision_encoder."))
    budget = fraction * torch.cuda.get_device_properties(device).total_memory
    batch = 1
    while estimate(model.config, total, trainable, batch * 2, max_seq_len, dtype.itemsize, False).total <= budget:
        batch *= 2
    return batch


def build_model(name: str, encoder_dir: Path, cached: bool) -> MiniMindVLM:
    """The preset with random weights; reading a feature cache, it has no encoder at all (as `--cache-features`)."""
    torch.manual_seed(0)
    model = MiniMindVLM(preset(name, image_hidden_size=768), None if cached else load_encoder(encoder_dir))
    model.init_fresh_weights()
    return model


def peak_step_memory(trainer: Trainer, batch: Batch) -> int | None:
    """Peak GPU memory of one more step on a batch padded to the max length (what the start-of-run estimate
    assumes), with the optimizer state already there; None off CUDA."""
    device = trainer.ctx.device
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    timed_step(trainer, batch)
    return torch.cuda.max_memory_allocated(device)


def run_features(
    stage: str,
    features: str,
    batch_size: int | None,
    args: argparse.Namespace,
    data_file: Path,
    encoder_dir: Path,
    ctx: DistContext,
) -> list[dict]:
    """Every mode of one stage, the images decoded and encoded each step, or their features read from a cache."""
    cached = features == "cache"
    model = build_model(args.preset, encoder_dir, cached)
    cfg = stage_config(
        stage, init="none", preset=args.preset, dtype=args.dtype, device=ctx.device.type, compile=args.compile,
        batch_size=batch_size,
    )  # fmt: skip
    cache_seconds, cache_file = 0.0, None
    if cached:
        built = build_feature_cache([data_file], encoder_dir, dtype=args.cache_dtype, device=ctx.device.type)
        cache_seconds, cache_file = built.seconds, str(built.path)
    encoder_params = 0 if cached else sum(p.numel() for p in model.vision_encoder.parameters())

    def spec(pack: bool) -> DataSpec:
        return DataSpec(
            files=[str(data_file)], tokenizer_dir=args.tokenizer, vision_dir=str(encoder_dir),
            max_seq_len=cfg.max_seq_len, random_system_prompt=False, pack=pack, feature_cache=cache_file,
        )  # fmt: skip

    trainer = Trainer(cfg, model, TrainData(spec(False)), ctx, data_file.parent / f"run-{stage}-{features}", "b.pth")
    count = args.warmup + args.steps
    loaded = {mode: load_batches(spec(mode == "packed"), mode, count, cfg.batch_size) for mode in args.modes}
    for mode, (batches, _) in loaded.items():
        if len(batches) < count:
            sys.exit(f"--rows {args.rows} gives {len(batches)} {mode} batches of {cfg.batch_size}; {count} are needed")
    times: dict[str, list[float]] = {mode: [] for mode in args.modes}
    # modes take turns step by step, so a busy machine slows them alike
    for index in range(count):
        for mode in args.modes:
            seconds = timed_step(trainer, loaded[mode][0][index])
            if index >= args.warmup:
                times[mode].append(seconds)
    peak = peak_step_memory(trainer, load_batches(spec(False), "max-length", 1, cfg.batch_size)[0][0])
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in trainer.params)
    estimated = estimate(
        model.config, total, trainable, cfg.batch_size, cfg.max_seq_len, trainer.dtype.itemsize, cfg.grad_checkpoint
    ).total
    results = []
    for mode in args.modes:
        batches, loader_rate = loaded[mode]
        f = figures(trainer, batches[args.warmup :], times[mode], cfg.freeze, encoder_params)
        results.append(
            {
                "benchmark": "train",
                "stage": stage,
                "mode": mode,
                "features": features,
                "cache_dtype": args.cache_dtype if cached else None,
                "cache_build_s": round(cache_seconds, 2),
                "compile": cfg.compile,
                "device": str(ctx.device),
                "dtype": str(trainer.dtype).removeprefix("torch."),
                "batch_size": cfg.batch_size,
                "max_seq_len": cfg.max_seq_len,
                "freeze": cfg.freeze,
                "steps": args.steps,
                "samples_per_s": round(f["samples_per_s"], 3),
                "tokens_per_s": round(f["tokens_per_s"], 1),
                "padding_fraction": round(f["padding"], 3),
                "rows_per_batch": round(f["rows_per_batch"], 2),
                "step_s": round(f["step_s"], 4),
                "model_flops_per_s": f["flops_per_s"],
                "loader_samples_per_s": round(loader_rate, 1),
                # the loader and the steps one after the other in one process (--num-workers 0)
                "serial_samples_per_s": round(1 / (1 / f["samples_per_s"] + 1 / loader_rate), 3),
                "projected_epoch_h": round(REAL_ROWS[stage] / f["samples_per_s"] / 3600, 2),
                "reference_epoch_h": REFERENCE_EPOCH_H.get(stage),
                "memory_estimate_gib": round(estimated / 2**30, 2),
                "peak_memory_gib": round(peak / 2**30, 2) if peak else None,
                "estimate_over_peak": round(estimated / peak, 3) if peak else None,
            }
        )
    if "max-length" in args.modes:
        baseline = results[args.modes.index("max-length")]["tokens_per_s"]
        for result in results:
            result["speedup_vs_max_length"] = round(result["tokens_per_s"] / baseline, 2)
    return results


def markdown(results: list[dict], peak: float) -> str:
    lines = [
        f"matmul peak measured: {peak / 1e12:.3f} TFLOP/s ({results[0]['dtype']}, {results[0]['device']})",
        "",
        "| stage | features | mode | batch | samples/s | useful tokens/s | padding | step s | MFU | epoch h |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['stage']} | {r['features']} | {r['mode']} | {r['batch_size']} x {r['max_seq_len']} | "
            f"{r['samples_per_s']} | {r['tokens_per_s']} | {r['padding_fraction']:.0%} | {r['step_s']} | "
            f"{r['mfu']:.1%} | {r['projected_epoch_h']} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["pretrain", "sft"], choices=["pretrain", "sft"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--features",
        nargs="+",
        default=["images", "cache"],
        choices=["images", "cache"],
        help="images: decoded and encoded every step; cache: read from a feature cache built first (no encoder)",
    )
    parser.add_argument("--cache-dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first")
    parser.add_argument("--batch-size", type=int, default=None, help="[default: the stage's, 16 / 4]")
    parser.add_argument(
        "--fill-memory",
        type=float,
        default=None,
        metavar="FRACTION",
        help="CUDA: the largest power-of-two batch whose memory estimate fits this fraction of the GPU",
    )
    parser.add_argument("--rows", type=int, default=512, help="rows of each synthetic parquet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument(
        "--tokenizer",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "minimind_tokenizer"),
        help="a MiniMind tokenizer folder",
    )
    parser.add_argument("--preset", default="minimind-3v", help="the model (tiny: a quick check of the script)")
    parser.add_argument("--encoder-layers", type=int, default=12, help="fewer for a quick check (12: full size)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=device)
    compute = pick_dtype(args.dtype, device)
    peak = matmul_peak(device, compute)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        encoder_dir = full_size_encoder(work / "encoder", args.encoder_layers)
        for stage in args.stages:
            (work / stage).mkdir()
            data_file = work / stage / "data.parquet"
            write_dataset(data_file, stage, args.rows, args.tokenizer)
            batch_size = args.batch_size
            if args.fill_memory:
                whole = build_model(args.preset, encoder_dir, cached=False)
                batch_size = fill_batch_size(stage, whole, device, args.fill_memory, compute)
            for features in args.features:
                results += run_features(stage, features, batch_size, args, data_file, encoder_dir, ctx)
    peak = max(peak, matmul_peak(device, compute))  # the best of two: a busy machine only lowers it
    print(
        json.dumps(
            {
                "benchmark": "matmul_peak",
                "device": str(device),
                "dtype": str(compute).removeprefix("torch."),
                "tflops": round(peak / 1e12, 3),
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            }
        ),
        flush=True,
    )
    for result in results:
        flops = result.pop("model_flops_per_s")
        result.update(model_tflops=round(flops / 1e12, 4), mfu=round(flops / peak, 4))
        print(json.dumps(result), flush=True)
    print(markdown(results, peak), file=sys.stderr)


if __name__ == "__main__":
    main()
