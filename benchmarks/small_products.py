"""x @ W^T (torch's `linear`), W @ x^T and oneDNN on prepacked weights for the rows of a batched decode step.

Over minimind-3v's matrices. `mmv.model.layers.DecodeLinear` picks W @ x^T for 2 to a few rows on the CPU in
float32, and the server packs its weights for oneDNN (`mmv.model.packed`); rerun this where those choices are in
doubt (another CPU, BLAS or torch). One line of JSON per thread count and row count: the median time of one pass
over every matrix a decode step multiplies (8 blocks and the output head, 244 MB), the three ways interleaved.

    python benchmarks/small_products.py [--threads 1 2] [--rows 1 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from mmv.model.layers import DecodeLinear
from mmv.model.packed import PackedLinear

BLOCK = [(768, 768), (384, 768), (384, 768), (768, 768), (2432, 768), (2432, 768), (768, 2432)]  # q k v o gate up down
MATRICES = BLOCK * 8 + [(6400, 768)]


def by_linear(inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
    for x, w in zip(inputs, weights, strict=True):
        torch.nn.functional.linear(x, w)


def by_transposed(inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
    for x, w in zip(inputs, weights, strict=True):
        (w @ x.T).T.contiguous()


def packed_layer(weight: torch.Tensor) -> PackedLinear:
    layer = DecodeLinear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    layer.weight = nn.Parameter(weight, requires_grad=False)
    return PackedLinear(layer)


def by_packed(inputs: list[torch.Tensor], weights: list[PackedLinear]) -> None:
    for x, layer in zip(inputs, weights, strict=True):
        layer(x)


def median_ms(runs: dict[str, Callable[[], None]], repeats: int = 15) -> dict[str, float]:
    """Each way's median time, the ways taking turns: this VM's speed drifts more between runs than they differ."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 2):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if repeat >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(each) * 1e3, 2) for name, each in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    weights = [torch.randn(out, width) for out, width in MATRICES]
    packed = [packed_layer(w) for w in weights]
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for rows in args.rows:
                inputs = [torch.randn(rows, w.shape[1]) for w in weights]
                ways = {
                    "linear_ms": partial(by_linear, inputs, weights),
                    "w_xt_ms": partial(by_transposed, inputs, weights),
                    "packed_ms": partial(by_packed, inputs, packed),
                }
                print(json.dumps({"threads": threads, "rows": rows, **median_ms(ways)}))


if __name__ == "__main__":
    main()
