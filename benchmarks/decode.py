"""Decode speed of `mmv chat` against the machine's memory-bandwidth ceiling.

A preset (minimind-3v by default) with random weights and a full-size random p32-256 SigLIP encoder, --batch prompts
(1) of one image each: time to first token (encoder + prefill), decode tokens/s over N new tokens, and peak RSS. A
decode step must read every LLM weight it uses once, so the ceiling is 1 / (time of bare matrix-vector products over
matrices of the same shapes; for a mixture of experts, the router and top-k experts of each layer). Usage:
python benchmarks/decode.py [--preset minimind-3v] [--new-tokens 256] [--batch 1] [--device cpu] [--dtype float32]
[--threads N] [--path fast|modules|concat] [--count-ops]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time

import torch

from mmv.config import preset
from mmv.generate import GenerationResult, generate
from mmv.model.fast_decode import FastDecoder
from mmv.model.moe import MoEFeedForward
from mmv.model.vlm import MiniMindVLM
from mmv.sampling import SamplingConfig


def full_size_encoder(layers: int = 12) -> torch.nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=layers,
        num_attention_heads=12,
        image_size=256,
        patch_size=32,
    )
    return SiglipVisionModel(config).eval()


def weights_read_per_token(model: MiniMindVLM) -> list[torch.Tensor]:
    """Every matrix a decode step multiplies by: for a mixture of experts, the router and top-k experts per layer."""
    top_k = model.config.num_experts_per_tok
    weights = []
    for block in model.model.layers:
        mlp = block.mlp
        used = [block.self_attn, mlp.gate, *mlp.experts[:top_k]] if isinstance(mlp, MoEFeedForward) else [block]
        weights += [m.weight.detach() for part in used for m in part.modules() if isinstance(m, torch.nn.Linear)]
    return [*weights, model.lm_head.weight.detach()]


def matvec_ceiling(model: MiniMindVLM, dtype: torch.dtype, device: str, repeats: int = 20) -> tuple[float, int]:
    """Tokens/s if a step did nothing but one matrix-vector product per weight matrix (the bandwidth bound)."""
    weights = [w.to(dtype) for w in weights_read_per_token(model)]
    vectors = {w.shape[1]: torch.randn(w.shape[1], dtype=dtype, device=device) for w in weights}
    total_bytes = sum(w.numel() * w.element_size() for w in weights)
    for w in weights:  # warm-up
        torch.mv(w, vectors[w.shape[1]])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for w in weights:
            torch.mv(w, vectors[w.shape[1]])
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times), total_bytes


class ConcatenatingCache:
    """The reference's cache: every step concatenates the new key/value onto the old (a baseline, not used by mmv)."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.length = 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer], self.values[layer]
        self.keys[layer] = k if old_k is None else torch.cat([old_k, k], dim=2)
        self.values[layer] = v if old_v is None else torch.cat([old_v, v], dim=2)
        return self.keys[layer], self.values[layer]

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens


@torch.inference_mode()
def concatenating_decode(model: MiniMindVLM, prompt: list[int], pixels: dict, new_tokens: int) -> GenerationResult:
    """Greedy decoding through the modules with `ConcatenatingCache`, timed as `generate` times itself."""
    start = time.perf_counter()
    image_embeds = model.encode_images(pixels)
    vision_ms = (time.perf_counter() - start) * 1000
    cache = ConcatenatingCache(model.config.num_hidden_layers)
    logits = model(torch.tensor([prompt]), image_embeds=image_embeds, cache=cache, last_only=True).logits
    token = logits[:, -1].argmax(-1, keepdim=True)
    ttft_ms = (time.perf_counter() - start) * 1000
    decode_start = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = model(token, cache=cache, last_only=True).logits[:, -1].argmax(-1, keepdim=True)
    return GenerationResult(
        tokens=[],
        vision_ms=vision_ms,
        ttft_ms=ttft_ms,
        decode_tokens_per_s=(new_tokens - 1) / (time.perf_counter() - decode_start),
    )


def operator_calls_per_layer(model: MiniMindVLM, fast: bool) -> float:
    """aten operator calls per layer and decode step, nested ones included (torch.profiler; 64 steps minus 0)."""
    from torch.profiler import ProfilerActivity, profile

    prompt = list(range(100, 140))

    def calls(new_tokens: int) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            generate(model, [prompt], SamplingConfig(max_new_tokens=new_tokens, stop_on_eos=False), fast_decode=fast)
        return sum(event.name.startswith("aten::") for event in prof.events())

    return (calls(65) - calls(1)) / 64 / model.config.num_hidden_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minimind-3v", help="minimind-3v or minimind-3v-moe")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--encoder-layers", type=int, default=12, help="fewer for a quick check (12: full size)")
    parser.add_argument("--batch", type=int, default=1, help="prompts decoded together, one image each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--path",
        default="fast",
        choices=["fast", "modules", "concat"],
        help="fast: what mmv chat runs; modules: every step through the modules; concat: the modules "
        "with a cache that grows by concatenation, as the reference's",
    )
    parser.add_argument("--count-ops", action="store_true", help="also count aten operator calls per layer and step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)

    model = (
        MiniMindVLM(preset(args.preset, image_hidden_size=768), full_size_encoder(args.encoder_layers))
        .to(args.device, dtype)
        .eval()
    )
    if args.batch > 1 and args.path == "concat":
        parser.error("--path concat decodes one prompt at a time (--batch 1)")
    pixels = {"pixel_values": torch.randn(args.batch, 3, 256, 256, dtype=dtype, device=args.device)}
    prompt = [1, 872, 198] + [12] * 64 + [198, 2001, 2, 198, 1, 1078, 198, 25, 198, 198, 26, 198, 198]
    prompts = [prompt] * args.batch
    # random weights rarely emit eos, but make sure every run decodes the full length
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, stop_on_eos=False)
    generate(model, prompts, SamplingConfig(max_new_tokens=8, stop_on_eos=False), pixel_inputs=pixels)  # warm-up

    # the ceiling is measured right before and after every run, so a busy machine skews both alike
    runs, ceilings = [], []
    for _ in range(args.runs):
        before, weight_bytes = matvec_ceiling(model, dtype, args.device)
        if args.path == "concat":
            runs.append(concatenating_decode(model, prompt, pixels, args.new_tokens))
        else:
            runs.append(generate(model, prompts, sampling, pixel_inputs=pixels, fast_decode=args.path == "fast"))
        after, _ = matvec_ceiling(model, dtype, args.device)
        ceilings.append((before + after) / 2)
    ceiling = statistics.median(ceilings)
    path = "modules" if args.path == "fast" and not FastDecoder.supports(model, batch=args.batch) else args.path
    decode = statistics.median(r.decode_tokens_per_s for r in runs)
    fraction = statistics.median(r.decode_tokens_per_s / c for r, c in zip(runs, ceilings, strict=True))
    result = {
        "benchmark": "decode",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "llm_weight_mb": round(weight_bytes / 2**20, 1),
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "path": path,
        "ttft_ms": round(statistics.median(r.ttft_ms for r in runs), 1),
        "vision_ms": round(statistics.median(r.vision_ms for r in runs), 1),
        "decode_tokens_per_s": round(decode, 1),  # per sequence: decode steps per second
        "total_decode_tokens_per_s": round(decode * args.batch, 1),
        "ceiling_tokens_per_s": round(ceiling, 1),
        "fraction_of_ceiling": round(fraction, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.count_ops and args.path != "concat":
        result["aten_calls_per_layer_step"] = round(operator_calls_per_layer(model, path == "fast"), 1)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
