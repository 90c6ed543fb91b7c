"""`mmv eval` on a tiny model trained for a few steps by the real trainer on synthetic data."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmv.demo import DemoConfig, make_start_weights, train_stage
from mmv.eval.runner import EvalConfig, evaluate
from mmv.eval.scoring import is_correct
from mmv.loading import load_model
from mmv.synth.dataset import SynthConfig, synthesize
from mmv.synth.encoder import TinyEncoderConfig, make_encoder
from tests.conftest import one_thread


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("eval")
    data = synthesize(root / "data", SynthConfig(n=96, eval_n=12, seed=7))
    make_encoder(root / "encoder", TinyEncoderConfig(hidden_size=32, intermediate_size=64, seed=7))
    start = make_start_weights(root, data.vocab_size, seed=7)
    config = DemoConfig(batch_size=8, warmup=5, seed=7)
    train_stage("sft", root / "run", data.files["sft"], start, root / "encoder", data.tokenizer, 40, 3e-3, config)
    return root, data


def test_batched_eval_matches_one_at_a_time_and_a_plain_forward(trained):
    root, data = trained
    loaded = load_model(root / "run", device="cpu", dtype="float32")
    files = [data.files["eval"]]
    batched = evaluate(loaded, files, EvalConfig(batch_size=5, max_new_tokens=16), root / "batched.jsonl")
    single = evaluate(loaded, files, EvalConfig(batch_size=1, max_new_tokens=16), root / "single.jsonl")
    rows = [json.loads(line) for line in (root / "batched.jsonl").read_text().splitlines()]
    alone = [json.loads(line) for line in (root / "single.jsonl").read_text().splitlines()]
    assert len(rows) == batched.evaluated == 12
    # left-padded generation and right-padded scoring change nothing
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in alone]
    for r, a in zip(rows, alone, strict=True):
        assert r["loss"] == pytest.approx(a["loss"], abs=1e-4)
    assert batched.mean_loss == pytest.approx(single.mean_loss, abs=1e-5)
    # the summary is what the records say
    summary = batched.summary()
    assert summary["correct"] == sum(r["correct"] for r in rows)
    weighted = sum(r["loss"] * r["answer_tokens"] for r in rows) / sum(r["answer_tokens"] for r in rows)
    assert summary["mean_loss"] == pytest.approx(weighted) and summary["perplexity"] == pytest.approx(
        math.exp(weighted)
    )
    assert all(r["correct"] == is_correct(r["prediction"], r["reference"], "exact") for r in rows)

    # an independent computation of one row's answer loss: one unpadded forward, plain cross-entropy
    from mmv.data.skips import Skips
    from mmv.eval.items import ItemReader, PromptFormat
    from mmv.tokenizer import encode, render_chat

    tok, model = loaded.tokenizer, loaded.model
    item = next(ItemReader(tok, PromptFormat()).items([data.files["eval"]], Skips()))
    prompt = encode(tok, render_chat(tok, item.messages))
    answer = [*encode(tok, item.reference), tok.eos_token_id]
    assert (item.prompt_ids, item.answer_ids) == (prompt, answer)
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        pixels = loaded.processor(item.images)
        logits = model(ids, pixel_inputs=pixels).logits[0]
    nll = torch.nn.functional.cross_entropy(logits[len(prompt) - 1 : -1], torch.tensor(answer))
    assert rows[0]["loss"] == pytest.approx(nll.item(), abs=1e-4)


def test_training_lowers_the_answer_loss(trained):
    root, data = trained
    start = load_model(root / "llm_64.pth", vision=root / "encoder", tokenizer=data.tokenizer, device="cpu")
    trained_model = load_model(root / "run", device="cpu")
    before = evaluate(start, [data.files["eval"]], EvalConfig(batch_size=12, max_new_tokens=8)).mean_loss
    after = evaluate(trained_model, [data.files["eval"]], EvalConfig(batch_size=12, max_new_tokens=8)).mean_loss
    assert after < 0.5 * before, (before, after)


def test_metrics():
    assert is_correct(" There are  two shapes.\n", "There are two shapes.", "exact")
    assert not is_correct("there are two shapes.", "There are two shapes.", "exact")
    assert is_correct("I think there are two shapes. Yes.", "There are two shapes.", "contains")
    assert not is_correct("two", "There are two shapes.", "contains")


def mmv(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmv.cli.app", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_cli_on_a_run_dir_and_a_pth_with_bad_rows_skipped(trained, tmp_path):
    root, data = trained
    rows = pq.read_table(data.files["eval"]).to_pylist()[:4]
    no_answer = json.dumps([{"role": "user", "content": "<image>\nWhat colour?"}])
    rows.append({"conversations": no_answer, "image_bytes": rows[0]["image_bytes"]})  # schema, as training says
    turns = json.loads(rows[0]["conversations"])
    no_reply = json.dumps([*turns, {"role": "user", "content": "And now?"}])  # answered before, not after
    rows.append({"conversations": no_reply, "image_bytes": rows[0]["image_bytes"]})
    rows.append({"conversations": rows[0]["conversations"], "image_bytes": rows[0]["image_bytes"][:300]})
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(data.files["eval"])), mixed)

    out = tmp_path / "records.jsonl"
    result = mmv(
        "eval",
        "--model",
        root / "run",
        "--data",
        mixed,
        "--batch-size",
        "3",
        "--max-new-tokens",
        "16",
        "--out",
        out,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["evaluated"] == 4 and summary["skipped"] == {"schema": 1, "no_reference": 1, "image": 1}
    assert "skipped row 5 of mixed.parquet (no_reference: no assistant reply follows" in result.stderr
    assert len(out.read_text().splitlines()) == 4
    assert summary["samples_per_s"] > 0 and summary["perplexity"] > 1
    assert "accuracy (exact)" in result.stderr

    weights = json.loads((root / "run" / "config.json").read_text())["weights"]
    pth = mmv(
        "eval",
        "--model",
        root / "run" / weights,
        "--vision",
        root / "run" / "vision",
        "--tokenizer",
        data.tokenizer,
        "--data",
        mixed,
        "--metric",
        "contains",
        "--max-new-tokens",
        "16",
        "--json",
    )
    assert pth.returncode == 0, pth.stderr
    assert json.loads(pth.stdout)["mean_loss"] == pytest.approx(summary["mean_loss"], rel=1e-2)  # fp16 weights

    missing = mmv("eval", "--model", root / "run", "--data", tmp_path / "nope.parquet")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0

    before = mixed.read_bytes()
    onto_data = mmv("eval", "--model", root / "run", "--data", data.files["eval"], mixed, "--out", mixed)
    assert onto_data.returncode == 2 and f"the output {mixed} is the input {mixed}" in onto_data.stderr
    assert onto_data.stderr.rstrip().endswith("(option: --out)")
    assert onto_data.stderr.strip().count("\n") == 0 and mixed.read_bytes() == before
