"""Batch-1 decode speed of llama.cpp on the GGUF files `mmv convert --to gguf` writes, next to mmv's own.

A preset (minimind-3v by default) with random weights is saved as a float32 `.pth`, converted to GGUF in f32, f16
and q8_0, and each file decodes N greedy tokens after a short chat prompt through llama-cpp-python's low-level
API (llama.cpp 0c1e570), with llama.cpp's default cache (F16 keys/values, automatic flash attention: what
llama-cli runs) and with the settings that answer like mmv (F32 cache, flash attention off). mmv's float32 decode
and int8 (`--quantize int8`: `mmv.quant.quantize_model`) are timed in the same run exactly as
benchmarks/decode.py times them (`generate`, which times itself; text only), next to the float32 memory-bandwidth
ceiling. Tokens/s counts the N-1 steps after the first token on both sides.
Usage: python benchmarks/gguf_decode.py [--preset minimind-3v] [--new-tokens 128] [--runs 3] [--threads N]
[--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np
import torch
from decode import matvec_ceiling

from mmv.config import preset
from mmv.convert import convert
from mmv.generate import SamplingConfig, generate
from mmv.model.vlm import MiniMindVLM
from mmv.quant import quantize_model

TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "minimind_tokenizer"
PROMPT = [1, 872, 198, 2001, 1234, 3456, 98, 2, 198, 1, 1078, 198, 25, 198, 198, 26, 198, 198]


def log_nothing(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every load to stderr; the benchmark prints JSON lines only."""


LOG_NOTHING = llama_cpp.llama_log_callback(log_nothing)  # kept alive for as long as llama.cpp may call it


def llama_decode_speed(path: Path, new_tokens: int, threads: int, llama_defaults: bool) -> float:
    """Tokens/s of N-1 single-token greedy steps after the prompt's first token."""
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = len(PROMPT) + new_tokens + 8
    params.n_threads = params.n_threads_batch = threads
    if not llama_defaults:
        params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = llama_cpp.llama_init_from_model(model, params)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))

    def step(tokens: list[int]) -> int:
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)  # must outlive the batch that points at it
        batch = llama_cpp.llama_batch_get_one(ids, len(tokens))
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError(f"llama_decode failed on {path}")
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        return int(logits.argmax())

    try:
        token = step(PROMPT)
        start = time.perf_counter()
        for _ in range(new_tokens - 1):
            token = step([token])
        return (new_tokens - 1) / (time.perf_counter() - start)
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def mmv_decode_speed(model: MiniMindVLM, new_tokens: int, runs: int) -> list[float]:
    """Tokens/s of mmv's greedy decode after the same prompt, per run (after a warm-up)."""
    generate(model, [PROMPT], SamplingConfig(max_new_tokens=8, stop_on_eos=False))
    sampling = SamplingConfig(max_new_tokens=new_tokens, stop_on_eos=False)
    return [generate(model, [PROMPT], sampling).decode_tokens_per_s for _ in range(runs)]


def export(model: MiniMindVLM, folder: Path, tokenizer: Path) -> dict[str, Path]:
    checkpoint = folder / "model.pth"
    torch.save(model.checkpoint_state_dict(), checkpoint)
    files = {}
    for outtype in ("f32", "f16", "q8_0"):
        out = folder / f"gguf-{outtype}"
        convert(checkpoint, "gguf", out, outtype=outtype, tokenizer=tokenizer)
        files[outtype] = out / f"{out.name}.gguf"
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minimind-3v", help="minimind-3v or minimind-3v-moe")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0 = torch's default count)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="the MiniMind tokenizer folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = MiniMindVLM(preset(args.preset)).eval()
    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(LOG_NOTHING, ctypes.c_void_p())

    mmv = mmv_decode_speed(model, args.new_tokens, args.runs)
    int8 = mmv_decode_speed(quantize_model(copy.deepcopy(model), "int8"), args.new_tokens, args.runs)
    ceiling, weight_bytes = matvec_ceiling(model, torch.float32, "cpu")
    common = {
        "benchmark": "gguf",
        "preset": args.preset,
        "threads": threads,
        "new_tokens": args.new_tokens,
        "cpu": platform.processor() or platform.machine(),
    }
    emit(
        {
            **common,
            "runtime": "mmv",
            "dtype": "float32",
            "decode_tokens_per_s": round(statistics.median(mmv), 1),
            "ceiling_tokens_per_s": round(ceiling, 1),
            "llm_weight_mb": round(weight_bytes / 2**20, 1),
        }
    )
    emit({**common, "runtime": "mmv", "dtype": "int8", "decode_tokens_per_s": round(statistics.median(int8), 1)})

    with tempfile.TemporaryDirectory() as folder:
        files = export(model, Path(folder), args.tokenizer)
        for outtype, path in files.items():
            for llama_defaults in (False, True):
                speeds = [llama_decode_speed(path, args.new_tokens, threads, llama_defaults) for _ in range(args.runs)]
                emit(
                    {
                        **common,
                        "runtime": "llama.cpp",
                        "outtype": outtype,
                        "cache": "f16 + flash attention auto (default)"
                        if llama_defaults
                        else "f32, flash attention off",
                        "file_mb": round(path.stat().st_size / 2**20, 1),
                        "decode_tokens_per_s": round(statistics.median(speeds), 1),
                        "vs_mmv": round(statistics.median(speeds) / statistics.median(mmv), 2),
                    }
                )


def emit(record: dict) -> None:
    json.dump(record, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
