"""x @ W^T (torch's `linear`) against W @ x^T for the few rows of a batched decode step, over minimind-3v's matrices.

`mmv.model.layers.DecodeLinear` picks W @ x^T for 2 to a few rows on the CPU in float32, where it was faster; rerun
this where that choice is in doubt (another CPU, BLAS or torch). One line of JSON per thread count and row count:
the median time of one pass over every matrix a decode step multiplies (8 blocks and the output head, 244 MB).

    python benchmarks/small_products.py [--threads 1 2] [--rows 1 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import torch

BLOCK = [(768, 768), (384, 768), (384, 768), (768, 768), (2432, 768), (2432, 768), (768, 2432)]  # q k v o gate up down
MATRICES = BLOCK * 8 + [(6400, 768)]


def by_linear(inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
    for x, w in zip(inputs, weights, strict=True):
        torch.nn.functional.linear(x, w)


def by_transposed(inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
    for x, w in zip(inputs, weights, strict=True):
        (w @ x.T).T.contiguous()


def median_ms(run, repeats: int = 15) -> float:
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    weights = [torch.randn(out, width) for out, width in MATRICES]
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for rows in args.rows:
                inputs = [torch.randn(rows, w.shape[1]) for w in weights]
                linear = median_ms(partial(by_linear, inputs, weights))
                transposed = median_ms(partial(by_transposed, inputs, weights))
                print(json.dumps({"threads": threads, "rows": rows, "linear_ms": linear, "w_xt_ms": transposed}))


if __name__ == "__main__":
    main()
