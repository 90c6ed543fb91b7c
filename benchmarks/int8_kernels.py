"""Int8 matrix kernels that PyTorch ships, against float32, at the matrix shapes of a MiniMind preset.

For each shape of a decoder layer and the output head (minimind-3v: hidden 768, intermediate 2432, vocab 6400),
at batch 1 (a decode step) and at a prefill width, each candidate computes y = x W^T:

- `float32`: `F.linear` on the float32 weight (what mmv runs without quantization);
- `int8-dynamic`: `torch.ops.quantized.linear_dynamic` (torch.ao dynamic quantization: int8 weights per output
  channel, prepacked by the quantized engine; each call quantizes x to 7-bit unsigned per tensor and runs int8 x
  int8), once per quantized engine this torch build has (x86, fbgemm, onednn);
- `int8-weight-only`: `torch._weight_int8pack_mm` (int8 weights per output channel, float activations);
- `int8-int-mm`: `torch._int_mm` (int8 x int8 -> int32) with the activation quantized per tensor by hand;
- `fp16-dynamic`: `torch.ops.quantized.linear_dynamic_fp16`, half-precision weights, for comparison.

A decode step streams every weight from memory once, so each candidate cycles through enough copies of its
matrix (its own storage format) to overflow the last-level cache: the times are those of weights read from RAM,
as in a real step. The candidates take turns, round after round, so a busy machine slows them alike; each
reports its median round. `step` adds up one forward's products (every layer's, and the head). Relative error:
|y - y64| / |y64| against float64, with N(0, 0.02) weights and N(0, 1) inputs.

Usage: python benchmarks/int8_kernels.py [--preset minimind-3v] [--prefill 90] [--threads N] [--seconds 0.5] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmv.config import preset

Kernel = Callable[[torch.Tensor], torch.Tensor]
Builder = Callable[[], Kernel]  # makes one copy of a kernel with its own weights

STREAM_BYTES = 256 * 2**20  # per candidate and shape: well past any CPU's last-level cache
MAX_COPIES = 512


def layer_shapes(preset_name: str) -> dict[str, tuple[int, int]]:
    """name -> (out_features N, in_features K) of the matrices one decode step multiplies by."""
    c = preset(preset_name)
    ffn = c.moe_intermediate_size if c.use_moe else c.intermediate_size
    return {
        "q_proj / o_proj": (c.num_attention_heads * c.head_dim, c.hidden_size),
        "k_proj / v_proj": (c.num_key_value_heads * c.head_dim, c.hidden_size),
        "gate_proj / up_proj": (ffn, c.hidden_size),
        "down_proj": (c.hidden_size, ffn),
        "lm_head": (c.vocab_size, c.hidden_size),
    }


def per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-10)
    return torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


def quantized_tensor(weight: torch.Tensor) -> torch.Tensor:
    values, scales = per_channel_int8(weight)
    zero = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated in torch 2.13, still working
        return torch._make_per_channel_quantized_tensor(values, scales.double(), zero, 0)


def with_engine(engine: str, make: Builder) -> Builder:
    """Prepack under `engine`; a call then runs that engine's kernel whatever engine is selected."""

    def build() -> Kernel:
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            return make()
        finally:
            torch.backends.quantized.engine = previous

    return build


def candidates(weight: torch.Tensor) -> dict[str, Builder]:
    """name -> builder of one copy of the kernel; each copy holds its own weights in its own format."""

    def float32():
        w = weight.clone()
        return lambda x: F.linear(x, w)

    def dynamic():
        packed = torch.ops.quantized.linear_prepack(quantized_tensor(weight), None)
        return lambda x: torch.ops.quantized.linear_dynamic(x, packed, True)

    def weight_only():
        values, scales = per_channel_int8(weight)
        return lambda x: torch._weight_int8pack_mm(x, values, scales)

    def int_mm():
        values, scales = per_channel_int8(weight)
        values_t = values.t().contiguous()

        def run(x: torch.Tensor) -> torch.Tensor:
            x_scale = x.abs().amax() / 127
            quantized = torch.round(x / x_scale).to(torch.int8)
            # _int_mm wants more than 16 rows: pad with zeros, drop them after
            quantized = F.pad(quantized, (0, 0, 0, max(0, 17 - x.shape[0])))
            return torch._int_mm(quantized, values_t)[: x.shape[0]] * (x_scale * scales)

        return run

    def fp16():
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        return lambda x: torch.ops.quantized.linear_dynamic_fp16(x, packed)

    found = {"float32": float32}
    for engine in torch.backends.quantized.supported_engines:
        if engine in ("x86", "fbgemm", "onednn"):
            found[f"int8-dynamic ({engine})"] = with_engine(engine, dynamic)
    found["int8-weight-only"] = weight_only
    found["int8-int-mm"] = int_mm
    found["fp16-dynamic"] = fp16
    return found


def storage_bytes(name: str, n: int, k: int) -> int:
    if name == "float32":
        return 4 * n * k
    if name == "fp16-dynamic":
        return 2 * n * k
    return n * k + 4 * n  # int8 values and a float32 scale per output channel


def copies_needed(build: Builder, x: torch.Tensor, size: int, seconds: float) -> int:
    """Enough copies to stream from RAM; fewer for a kernel so slow that one pass would take a tenth of the
    budget (it is bound by arithmetic, so where its weights sit in the caches hardly matters)."""
    call = build()
    call(x)
    start = time.perf_counter()
    call(x)
    once = time.perf_counter() - start
    return max(1, min(MAX_COPIES, math.ceil(STREAM_BYTES / size), int(seconds / 10 / once)))


def relative_error(build: Builder, weight: torch.Tensor, x: torch.Tensor) -> float:
    exact = x.double() @ weight.double().t()
    got = build()(x).double()[: x.shape[0]]
    return float((got - exact).norm() / exact.norm())


def measure_shape(name: str, n: int, k: int, rows: int, seconds: float) -> list[dict]:
    """Every candidate at one shape, in rounds that visit them in turn (so a busy machine slows all alike)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(n, k, generator=generator) * 0.02
    x = torch.randn(rows, k, generator=generator)
    results, timed = [], {}
    for kernel, build in candidates(weight).items():
        base = {"shape": name, "n": n, "k": k, "rows": rows, "kernel": kernel}
        try:
            error = relative_error(build, weight, x)
            copies = [build() for _ in range(copies_needed(build, x, storage_bytes(kernel, n, k), seconds))]
        except RuntimeError as exc:  # a kernel this build or CPU does not offer at this shape
            results.append({**base, "error": str(exc).splitlines()[0]})
            continue
        timed[kernel] = (base, error, copies, [])
    deadline = time.perf_counter() + seconds * len(timed)
    while time.perf_counter() < deadline or min(len(t[3]) for t in timed.values()) < 3:
        for _, _, copies, rounds in timed.values():
            start = time.perf_counter()
            for call in copies:
                call(x)
            rounds.append((time.perf_counter() - start) / len(copies))
    for kernel, (base, error, _, rounds) in timed.items():
        per_call = statistics.median(rounds)
        results.append(
            {
                **base,
                "us": round(per_call * 1e6, 1),
                "weight_gb_per_s": round(storage_bytes(kernel, n, k) / per_call / 1e9, 2),
                "relative_error": float(f"{error:.2e}"),
            }
        )
    return results


def step_estimates(results: list[dict], preset_name: str) -> dict[tuple[int, str], float]:
    """(rows, kernel) -> microseconds of every product of one forward step (all layers and the head)."""
    c = preset(preset_name)
    per_layer = {"q_proj / o_proj": 2, "k_proj / v_proj": 2, "gate_proj / up_proj": 2, "down_proj": 1}
    times: dict[tuple[int, str], float] = {}
    for r in results:
        if "us" in r:
            count = 1 if r["shape"] == "lm_head" else per_layer[r["shape"]] * c.num_hidden_layers
            key = (r["rows"], r["kernel"])
            times[key] = times.get(key, 0.0) + count * r["us"]
    return times


def print_table(results: list[dict], steps: dict[tuple[int, str], float]) -> None:
    for rows in sorted({r["rows"] for r in results}):
        print(f"\nbatch {rows}: us per call (weight GB/s; relative error); step = all products of one forward")
        kernels = list(dict.fromkeys(r["kernel"] for r in results))
        shapes = list(dict.fromkeys(r["shape"] for r in results))
        print("| kernel | " + " | ".join(shapes) + " | step |")
        print("|---|" + "---|" * (len(shapes) + 1))
        for kernel in kernels:
            cells = []
            for shape in shapes:
                r = next(r for r in results if r["rows"] == rows and r["kernel"] == kernel and r["shape"] == shape)
                cells.append(
                    "n/a" if "us" not in r else f"{r['us']:.0f} ({r['weight_gb_per_s']:.1f}; {r['relative_error']:.0e})"
                )
            step = steps.get((rows, kernel))
            cells.append("n/a" if step is None else f"{step / 1000:.2f} ms")
            print(f"| {kernel} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minimind-3v")
    parser.add_argument("--prefill", type=int, default=90, help="rows of the prefill shape (0 = batch 1 only)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing budget per kernel and shape")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for rows in [1, args.prefill] if args.prefill else [1]:
        for name, (n, k) in layer_shapes(args.preset).items():
            results += measure_shape(name, n, k, rows, args.seconds)
            print(f"measured {name} at batch {rows}", file=sys.stderr, flush=True)
    header = {
        "benchmark": "int8_kernels",
        "preset": args.preset,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    steps = step_estimates(results, args.preset)
    if args.json:
        step_ms = [{"rows": rows, "kernel": kernel, "ms": round(us / 1000, 3)} for (rows, kernel), us in steps.items()]
        json.dump({**header, "results": results, "steps": step_ms}, sys.stdout)
        sys.stdout.write("\n")
        return
    print(json.dumps(header))
    print_table(results, steps)


if __name__ == "__main__":
    main()
