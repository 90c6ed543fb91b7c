"""Decode speed of `mmv chat` against the machine's memory-bandwidth ceiling, in float32 and int8.

A preset (minimind-3v by default) with random weights and a full-size random p32-256 SigLIP encoder, --batch prompts
(1) of one image each: time to first token (encoder + prefill), decode tokens/s over N new tokens, and peak RSS. A
decode step must read every LLM weight it uses once, so the ceiling is 1 / (time of bare matrix-vector products over
matrices of the same shapes; for a mixture of experts, the router and top-k experts of each layer).

`--quantize int8` also times an int8 copy of the same model (`mmv.quant.quantize_model`), run for run alternating
with float32 so that a busy machine slows both alike, against two ceilings: the bare int8 kernel over the int8
matrices, and the float32 ceiling's memory bandwidth applied to the int8 bytes (the most any kernel could reach).
Then it measures the peak RSS of a chat session in a fresh process per precision: the model saved to a temporary
folder, loaded by `mmv.loading.load_model` as `mmv chat` does, quantized, and asked two questions about an image
(needs a tokenizer: `--tokenizer`, default ../shared/minimind_tokenizer). Usage:
python benchmarks/decode.py [--preset minimind-3v] [--new-tokens 256] [--batch 1] [--device cpu] [--dtype float32]
[--threads N] [--path fast|modules|concat] [--count-ops] [--quantize int8 [--skip-memory]]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mmv.config import preset
from mmv.generate import GenerationResult, generate
from mmv.model.fast_decode import FastDecoder
from mmv.model.moe import MoEFeedForward
from mmv.model.vlm import MiniMindVLM
from mmv.quant import quantize_model
from mmv.quant.int8 import Int8Linear
from mmv.sampling import SamplingConfig

DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "minimind_tokenizer"


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


def layers_read_per_token(model: MiniMindVLM) -> list[nn.Module]:
    """Every matrix a decode step multiplies by: for a mixture of experts, the router and top-k experts per layer."""
    top_k = model.config.num_experts_per_tok
    layers = []
    for block in model.model.layers:
        mlp = block.mlp
        used = [block.self_attn, mlp.gate, *mlp.experts[:top_k]] if isinstance(mlp, MoEFeedForward) else [block]
        layers += [m for part in used for m in part.modules() if isinstance(m, (nn.Linear, Int8Linear))]
    return [*layers, model.lm_head]


def bare_product(layer: nn.Module, dtype: torch.dtype, device: str) -> tuple[Callable[[], object], int]:
    """One matrix-vector product by the layer's matrix, as its kind computes it (torch.mv / the int8 kernel),
    and the bytes of weights it reads."""
    if isinstance(layer, Int8Linear):
        row = torch.randn(1, layer.in_features)
        return (lambda: layer(row)), layer.weight_bytes()
    weight = layer.weight.detach().to(dtype)
    vector = torch.randn(weight.shape[1], dtype=dtype, device=device)
    return (lambda: torch.mv(weight, vector)), weight.numel() * weight.element_size()


def matvec_ceiling(model: MiniMindVLM, dtype: torch.dtype, device: str, repeats: int = 20) -> tuple[float, int]:
    """Tokens/s if a step did nothing but one matrix-vector product per weight matrix (the bandwidth bound for
    float weights; for an int8 model, the bound of its int8 kernel)."""
    products = [bare_product(layer, dtype, device) for layer in layers_read_per_token(model)]
    total_bytes = sum(size for _, size in products)
    for product, _ in products:  # warm-up
        product()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for product, _ in products:
            product()
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
    """aten (and quantized) operator calls per layer and decode step, nested ones included (torch.profiler;
    64 steps minus 0)."""
    from torch.profiler import ProfilerActivity, profile

    prompt = list(range(100, 140))

    def calls(new_tokens: int) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            generate(model, [prompt], SamplingConfig(max_new_tokens=new_tokens, stop_on_eos=False), fast_decode=fast)
        return sum(event.name.startswith(("aten::", "quantized::")) for event in prof.events())

    return (calls(65) - calls(1)) / 64 / model.config.num_hidden_layers


def timed_run(model: MiniMindVLM, args: argparse.Namespace, prompt: list[int], pixels: dict) -> GenerationResult:
    if args.path == "concat":
        return concatenating_decode(model, prompt, pixels, args.new_tokens)
    # random weights rarely emit eos, but make sure every run decodes the full length
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, stop_on_eos=False)
    prompts = [prompt] * args.batch
    return generate(model, prompts, sampling, pixel_inputs=pixels, fast_decode=args.path == "fast")


def summary(runs: list[GenerationResult], ceilings: list[float]) -> dict:
    return {
        "ttft_ms": round(statistics.median(r.ttft_ms for r in runs), 1),
        "vision_ms": round(statistics.median(r.vision_ms for r in runs), 1),
        "decode_tokens_per_s": round(statistics.median(r.decode_tokens_per_s for r in runs), 1),
        "ceiling_tokens_per_s": round(statistics.median(ceilings), 1),
        # per run against the ceiling measured around it, so a busy machine skews both alike
        "fraction_of_ceiling": round(
            statistics.median(r.decode_tokens_per_s / c for r, c in zip(runs, ceilings, strict=True)), 3
        ),
    }


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
    parser.add_argument("--quantize", choices=["int8"], help="also time an int8 copy, alternating with float32")
    parser.add_argument("--skip-memory", action="store_true", help="with --quantize: no chat-session RSS processes")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="for the chat-session RSS")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)  # one chat-session RSS process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.quantize, args.tokenizer, args.new_tokens)
        return
    if args.quantize and (args.device != "cpu" or args.dtype != "float32"):
        parser.error("--quantize int8 compares against float32 on CPU")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)

    if args.batch > 1 and args.path == "concat":
        parser.error("--path concat decodes one prompt at a time (--batch 1)")
    model = (
        MiniMindVLM(preset(args.preset, image_hidden_size=768), full_size_encoder(args.encoder_layers))
        .to(args.device, dtype)
        .eval()
    )
    models = {args.dtype: model}
    if args.quantize:
        start = time.perf_counter()
        models["int8"] = quantize_model(copy.deepcopy(model), args.quantize)
        quantize_s = time.perf_counter() - start
    pixels = {"pixel_values": torch.randn(args.batch, 3, 256, 256, dtype=dtype, device=args.device)}
    prompt = [1, 872, 198] + [12] * 64 + [198, 2001, 2, 198, 1, 1078, 198, 25, 198, 198, 26, 198, 198]
    for each in models.values():  # warm-up
        warm = SamplingConfig(max_new_tokens=8, stop_on_eos=False)
        generate(each, [prompt] * args.batch, warm, pixel_inputs=pixels)

    # the ceiling is measured right before and after every run, so a busy machine skews both alike
    runs = {name: [] for name in models}
    ceilings = {name: [] for name in models}
    weight_bytes = {}
    for _ in range(args.runs):
        for name, each in models.items():
            before, weight_bytes[name] = matvec_ceiling(each, dtype, args.device)
            runs[name].append(timed_run(each, args, prompt, pixels))
            after, _ = matvec_ceiling(each, dtype, args.device)
            ceilings[name].append((before + after) / 2)
    path = "modules" if args.path == "fast" and not FastDecoder.supports(model, batch=args.batch) else args.path
    result = {
        "benchmark": "decode",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "llm_weight_mb": round(weight_bytes[args.dtype] / 2**20, 1),
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "path": path,
        **summary(runs[args.dtype], ceilings[args.dtype]),
        # per sequence above (decode steps per second); all rows together here
        "total_decode_tokens_per_s": round(
            statistics.median(r.decode_tokens_per_s for r in runs[args.dtype]) * args.batch, 1
        ),
    }
    if args.quantize:
        result["int8"] = int8_summary(runs, ceilings, weight_bytes, args.dtype)
        result["int8"]["quantize_s"] = round(quantize_s, 2)
        if not args.skip_memory:
            result["chat_session_rss_mb"] = chat_session_memory(model, args)
    else:  # with --quantize the process holds both models: the chat-session figures replace this one
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.count_ops and args.path != "concat":
        result["aten_calls_per_layer_step"] = round(operator_calls_per_layer(model, path == "fast"), 1)
        if args.quantize:
            result["int8"]["op_calls_per_layer_step"] = round(operator_calls_per_layer(models["int8"], True), 1)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


def int8_summary(runs: dict, ceilings: dict, weight_bytes: dict, base: str) -> dict:
    """The int8 runs against their kernel's ceiling and against the float ceiling's bandwidth on int8 bytes."""
    kernel = summary(runs["int8"], ceilings["int8"])
    # bytes/s that the float products reached in the same round, spent on the int8 bytes
    bandwidth = [c * weight_bytes[base] / weight_bytes["int8"] for c in ceilings[base]]
    float_speed = statistics.median(r.decode_tokens_per_s for r in runs[base])
    return {
        "llm_weight_mb": round(weight_bytes["int8"] / 2**20, 1),
        "ttft_ms": kernel["ttft_ms"],
        "vision_ms": kernel["vision_ms"],
        "decode_tokens_per_s": kernel["decode_tokens_per_s"],
        "speedup_over_float": round(kernel["decode_tokens_per_s"] / float_speed, 2),
        "kernel_ceiling_tokens_per_s": kernel["ceiling_tokens_per_s"],
        "fraction_of_kernel_ceiling": kernel["fraction_of_ceiling"],
        "bandwidth_ceiling_tokens_per_s": round(statistics.median(bandwidth), 1),
        "fraction_of_bandwidth_ceiling": round(
            statistics.median(r.decode_tokens_per_s / c for r, c in zip(runs["int8"], bandwidth, strict=True)), 3
        ),
    }


def chat_session_memory(model: MiniMindVLM, args: argparse.Namespace) -> dict:
    """Peak RSS of a chat session per precision, each in a fresh process loading the saved model."""
    from mmv.synth.encoder import PREPROCESSORS

    with tempfile.TemporaryDirectory(prefix="mmv-decode-") as tmp:
        folder = Path(tmp)
        torch.save(model.checkpoint_state_dict(), folder / "model.pth")
        model.vision_encoder.save_pretrained(str(folder / "vision"), safe_serialization=True)
        (folder / "vision" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSORS["siglip"]))
        results = {}
        for name, quantize in (("float32", None), ("int8", args.quantize)):
            command = [sys.executable, __file__, "--memory-child", str(folder), "--tokenizer", str(args.tokenizer)]
            command += ["--new-tokens", str(args.new_tokens), "--threads", str(torch.get_num_threads())]
            command += ["--quantize", quantize] if quantize else []
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"chat-session process failed:\n{done.stderr}")
            results[name] = json.loads(done.stdout.splitlines()[-1])
    return results


def memory_child(folder: Path, quantize: str | None, tokenizer: Path, new_tokens: int) -> None:
    """Load as `mmv chat` does, (quantize,) ask two questions about an image; print RSS figures as JSON."""
    from PIL import Image

    from mmv.chat import ChatSession
    from mmv.loading import load_model

    loaded = load_model(
        folder / "model.pth", vision=folder / "vision", tokenizer=tokenizer, device="cpu", quantize=quantize
    )
    after_load, load_peak = proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    # the peak from here on: writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
    Path("/proc/self/clear_refs").write_text("5")
    session = ChatSession(loaded, SamplingConfig(max_new_tokens=new_tokens, stop_on_eos=False, temperature=0.0))
    session.attach("noise.png", Image.effect_noise((256, 256), 64).convert("RGB"))
    first = session.ask("What is in the picture?")
    second = session.ask("And what colour is it?")
    report = {
        "after_load": after_load,
        "load_peak": load_peak,
        "session_peak": proc_status_mb("VmHWM"),
        "ttft_ms": [round(first.ttft_ms, 1), round(second.ttft_ms, 1)],
        "decode_tokens_per_s": [round(first.decode_tokens_per_s, 1), round(second.decode_tokens_per_s, 1)],
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


def proc_status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process (VmHWM, not ru_maxrss: a forked child inherits its parent's ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} in /proc/self/status")


if __name__ == "__main__":
    main()
