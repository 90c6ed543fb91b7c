"""`--quantize int8` on `mmv chat`, `mmv eval` and `mmv serve`, end to end on the reference fixture model."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases

MODEL = ["--model", str(REFERENCE / "p32" / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
IMAGE = str(REFERENCE / "p32" / "image.png")
GREEDY = ["--temperature", "0", "--max-new-tokens", "16"]
LABELS = str(REFERENCE / "labels" / "single.parquet")


def reference_reply() -> str:
    from mmv.tokenizer import load_tokenizer

    cases = fixture_cases("p32")
    new = cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
    return load_tokenizer(TOKENIZER_DIR).decode(new, skip_special_tokens=True)


def test_chat_answers_with_int8_weights():
    result = run_cli(["chat", IMAGE, *MODEL, *GREEDY, "--quantize", "int8", "--prompt", "What is in this image?"])
    assert result.exit_code == 0, result.stderr
    # measured: int8 keeps the whole 16-token greedy reply of the float32 reference on this fixture
    assert result.stdout == reference_reply() + "\n"


def test_an_unknown_scheme_or_a_half_precision_model_is_one_clear_line():
    result = run_cli(["chat", IMAGE, *MODEL, "--quantize", "int4", "--prompt", "hi"])
    assert result.exit_code == 2
    assert "unknown quantization 'int4'; expected one of int8" in result.stderr
    result = run_cli(["chat", IMAGE, *MODEL, "--quantize", "int8", "--dtype", "bfloat16", "--prompt", "hi"])
    assert result.exit_code == 2
    assert "runs on CPU in float32" in result.stderr and "Traceback" not in result.stderr


def test_eval_scores_the_int8_model_close_to_float32():
    args = ["--json", "eval", *MODEL, "--data", LABELS, "--max-new-tokens", "4"]
    plain = json.loads(run_cli(args).stdout)
    quantized = run_cli([*args, "--quantize", "int8"])
    assert quantized.exit_code == 0, quantized.stderr
    summary = json.loads(quantized.stdout)
    assert summary["evaluated"] == plain["evaluated"] > 0
    # the answer loss is teacher-forced over every reference token: measured 9.1551 against 9.1540
    assert abs(summary["mean_loss"] - plain["mean_loss"]) < 0.005 * plain["mean_loss"]


@pytest.mark.slow
def test_serve_answers_with_int8_weights_through_the_openai_client():
    from tests.serve.conftest import FIXTURE_IMAGE, image_part, image_uri, start_server
    from tests.serve.test_api import QUESTION

    server = start_server("--quantize", "int8")
    try:
        reply = server.client(api_key="unused").chat.completions.create(
            model="model",
            messages=[
                {"role": "user", "content": [image_part(image_uri(FIXTURE_IMAGE)), {"type": "text", "text": QUESTION}]}
            ],
            max_tokens=16,
            temperature=0,
        )
    finally:
        assert server.stop() == 0
    assert reply.choices[0].message.content == reference_reply()
