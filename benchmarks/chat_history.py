"""Time to first token of a chat turn after a long history, with and without reusing the last turn's keys/values.

The minimind-3v preset (random weights, float32, CPU, batch 1), text only. For each history length: a previous
turn runs over that many tokens and replies 16; the next turn is the previous prompt, that reply and a 20-token
message. Timed: that next turn's time to first token when everything is prefilled again (what a chat did before
`PrefixCache`) and when the common prefix is reused (what `mmv chat` does now).

Usage: python benchmarks/chat_history.py [--lengths 250 500 1000 2000] [--runs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

import torch

from mmv.config import preset
from mmv.generate import generate
from mmv.model.vlm import MiniMindVLM
from mmv.prefix_cache import PrefixCache
from mmv.sampling import SamplingConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MiniMindVLM(preset("minimind-3v")).eval()
    first_token = SamplingConfig(max_new_tokens=1, stop_on_eos=False)
    generate(model, [list(range(100, 164))], first_token)  # warm-up

    for length in args.lengths:
        history = torch.randint(3, model.config.vocab_size, (length,)).tolist()
        previous = PrefixCache()
        reply = generate(
            model, [history], SamplingConfig(max_new_tokens=16, stop_on_eos=False), prefix=previous
        ).tokens[0]
        turn = history + reply + torch.randint(3, model.config.vocab_size, (20,)).tolist()
        fresh = [generate(model, [turn], first_token).ttft_ms for _ in range(args.runs)]
        # generate never writes into the cache it reuses, so each run can start from the same previous turn
        reused = [generate(model, [turn], first_token, prefix=dataclasses.replace(previous)) for _ in range(args.runs)]
        result = {
            "benchmark": "chat_history",
            "threads": torch.get_num_threads(),
            "history_tokens": length,
            "turn_tokens": len(turn),
            "reused_tokens": reused[0].reused_tokens,
            "ttft_ms_prefill_all": round(statistics.median(fresh), 1),
            "ttft_ms_reuse": round(statistics.median(r.ttft_ms for r in reused), 1),
        }
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
