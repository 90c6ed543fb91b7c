"""Throughput and latency of `mmv serve` under 1, 4, 8 and 16 concurrent streaming clients.

The minimind-3v preset with random weights and a full-size random p32-256 SigLIP encoder (saved with
save_pretrained), float32 on CPU (or int8 weights with `--quantize int8`), served by the real `mmv serve` in a
subprocess on a loopback port. Each client sends one image (a different photo each, then seeded noise, so no client
reuses another's features) and a question, greedy, and streams `--new-tokens` tokens (`ignore_eos`). Per
concurrency level: aggregate completion tokens/s over the wall time of the round, time to first token p50/p95 (to
the reply's first chunk, which the server sends with the first token: a random model's first tokens are often
byte pieces or special tokens that show no text yet), and the server's peak RSS so far.

Usage: python benchmarks/serve.py [--clients 1 4 8 16] [--new-tokens 128] [--max-batch 8] [--quantize int8]
                                  [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def build_model_folder(folder: Path) -> Path:
    """minimind-3v.pth and vision/ with random weights, for `mmv serve --model minimind-3v.pth --vision vision`."""
    import shutil

    from transformers import SiglipVisionConfig, SiglipVisionModel

    from mmv.config import preset
    from mmv.model.vlm import MiniMindVLM

    folder.mkdir()
    torch.manual_seed(0)
    vision = SiglipVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=256,
        patch_size=32,
    )
    SiglipVisionModel(vision).save_pretrained(folder / "vision")
    # the reference p32 preprocessing (resize to 256, normalise): the fixture encoder's file is that one
    shutil.copy(SHARED / "fixtures/reference/p32/vision/preprocessor_config.json", folder / "vision")
    config = preset("minimind-3v")
    model = MiniMindVLM(config)
    model.init_fresh_weights()
    torch.save(model.checkpoint_state_dict(), folder / "minimind-3v.pth")  # served as "minimind-3v"
    return folder / "minimind-3v.pth"


def photo_uris(count: int) -> list[str]:
    """Distinct JPEGs: the shared photos, then noise, so every client's image is encoded."""
    from PIL import Image

    uris = []
    photos = sorted((SHARED / "images").glob("*.jpg"))
    noise = random.Random(0)  # the same images every run
    for index in range(count):
        if index < len(photos):
            data = photos[index].read_bytes()
        else:
            buffer = io.BytesIO()
            Image.frombytes("RGB", (256, 256), noise.randbytes(256 * 256 * 3)).save(buffer, format="JPEG")
            data = buffer.getvalue()
        uris.append(f"data:image/jpeg;base64,{base64.b64encode(data).decode()}")
    return uris


def start(model: Path, tokenizer: Path, max_batch: int, quantize: str | None) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "mmv.cli.app",
        "serve",
        "--model",
        str(model),
        "--vision",
        str(model.parent / "vision"),
        "--tokenizer",
        str(tokenizer),
        "--port",
        "0",
        "--max-batch",
        str(max_batch),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        *(["--quantize", quantize] if quantize else []),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"})
    said = []
    for line in process.stderr:
        said.append(line)
        found = re.search(r"chat page (http://\S+?)/\s", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, found.group(1)
    raise SystemExit(f"mmv serve did not start (exit code {process.wait()}): {''.join(said)}")


def one_client(client, uri: str, new_tokens: int, results: list, barrier: threading.Barrier) -> None:
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Describe this image."}]
    barrier.wait()
    started = time.perf_counter()
    first, tokens = None, 0
    stream = client.chat.completions.create(
        model="minimind-3v",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=new_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        if chunk.choices and first is None:
            first = time.perf_counter()
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    results.append(((first or time.perf_counter()) - started, tokens, time.perf_counter()))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_round(url: str, clients: int, uris: list[str], new_tokens: int) -> dict:
    from openai import OpenAI

    results: list = []
    barrier = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(
            target=one_client,
            args=(
                OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=600),
                uris[i],
                new_tokens,
                results,
                barrier,
            ),
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = max(end for _, _, end in results) - started
    ttfts = sorted(ttft for ttft, _, _ in results)
    return {
        "clients": clients,
        "tokens": sum(tokens for _, tokens, _ in results),
        "aggregate_tokens_per_s": round(sum(tokens for _, tokens, _ in results) / wall, 1),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--quantize", choices=["int8"], help="serve with int8 weights (mmv serve --quantize)")
    parser.add_argument("--tokenizer", type=Path, default=SHARED / "minimind_tokenizer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model_folder(Path(tmp) / "minimind-3v")
        process, url = start(model, args.tokenizer, args.max_batch, args.quantize)
        try:
            # every request a new image: none may find its features or its prompt cached from an earlier round
            uris = photo_uris(sum(args.clients) + 1)
            run_round(url, 1, uris[-1:], 8)  # warm-up: first calls allocate and initialise
            offset = 0
            for clients in args.clients:
                result = run_round(url, clients, uris[offset : offset + clients], args.new_tokens)
                offset += clients
                result.update(
                    benchmark="serve",
                    max_batch=args.max_batch,
                    weights=args.quantize or "float32",
                    new_tokens=args.new_tokens,
                    server_peak_rss_mb=round(peak_rss_mb(process.pid), 1),
                )
                json.dump(result, sys.stdout)
                sys.stdout.write("\n")
                sys.stdout.flush()
        finally:
            process.terminate()
            process.wait(60)


if __name__ == "__main__":
    main()
