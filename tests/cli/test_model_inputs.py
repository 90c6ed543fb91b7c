"""What every model-loading command shares: --experts-per-token, the command's own flag in a hint, and malformed
model inputs refused in one line (exit 2, no traceback) before anything runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR, fixture_cases

MOE = REFERENCE / "p32-moe"
GREEDY = ["--temperature", "0", "--max-new-tokens", "16", "--prompt", "What is in this image?"]


@pytest.fixture(autouse=True)
def empty_download_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "mmv-home"))


def greedy_reply(fixture: str) -> str:
    from mmv.tokenizer import load_tokenizer

    cases = fixture_cases(fixture)
    new = cases["generated_greedy"][0, cases["input_ids"].shape[1] :].tolist()
    return load_tokenizer(TOKENIZER_DIR).decode(new, skip_special_tokens=True)


def one_line_refusal(result) -> str:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_a_top2_moe_pth_runs_top2_with_experts_per_token():
    args = ["chat", str(MOE / "image.png"), "--model", str(MOE / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
    result = run_cli([*args, *GREEDY, "--experts-per-token", "2"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == greedy_reply("p32-moe") + "\n" and "note:" not in result.stderr
    bare = run_cli([*args, *GREEDY])
    assert bare.exit_code == 0, bare.stderr
    assert (
        "note: model.pth does not record how many experts each token routes to; it runs with 1 "
        "(option: --experts-per-token K)" in bare.stderr
    )
    assert bare.stdout != result.stdout  # top-1 routing is another model


def test_convert_records_experts_per_token(tmp_path):
    args = ["convert", str(MOE / "model.pth"), "--to", "transformers", "--tokenizer", str(TOKENIZER_DIR)]
    result = run_cli([*args, "--out", str(tmp_path / "k2"), "--experts-per-token", "2"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "k2" / "config.json").read_text())["num_experts_per_tok"] == 2
    bare = run_cli([*args, "--out", str(tmp_path / "k1")])
    assert "it runs with 1 (option: --experts-per-token K)" in bare.stderr
    assert json.loads((tmp_path / "k1" / "config.json").read_text())["num_experts_per_tok"] == 1


def test_eval_takes_experts_per_token(tmp_path):
    data = tmp_path / "x.parquet"
    data.write_bytes(b"")  # never read: the model is refused first
    model = ["--model", str(MOE / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
    result = run_cli(["eval", *model, "--data", str(data), "--experts-per-token", "9"])
    assert one_line_refusal(result).endswith(
        "9 experts per token does not fit model.pth, which has 4 experts (option: --experts-per-token K)"
    )


def test_each_command_names_its_own_flag():
    naflex = str(REFERENCE / "naflex-merge4" / "vision")
    model = str(REFERENCE / "p32" / "model.pth")
    chat = one_line_refusal(run_cli(["chat", "--model", model, "--vision", naflex, "--prompt", "hi"]))
    assert chat.endswith("trained for a p32-256 encoder of width 32 (option: --vision DIR)")
    convert = run_cli(["convert", model, "--to", "pth", "--out", "unused.pth", "--with-vision", naflex])
    assert one_line_refusal(convert).endswith("trained for a p32-256 encoder of width 32 (option: --with-vision DIR)")
    tokenizer = one_line_refusal(run_cli(["chat", "--model", model, "--vision", str(REFERENCE / "p32" / "vision")]))
    assert tokenizer.endswith("run `mmv download llm` (option: --tokenizer DIR)")


def saved_with(tmp_path, change) -> str:
    state = torch.load(REFERENCE / "p32" / "model.pth", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "model.pth")
    shutil.copytree(REFERENCE / "p32" / "vision", tmp_path / "vision")
    return str(tmp_path / "model.pth")


def folder_with(tmp_path, change) -> str:
    folder = tmp_path / "tf"
    shutil.copytree(REFERENCE / "p32" / "hf-upstream", folder)
    shutil.copytree(REFERENCE / "p32" / "vision", folder / "vision")
    change(folder)
    return str(folder)


def edit_json(path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


BAD_MODELS = {
    "zero-size q_norm": (
        lambda t: saved_with(t, lambda s: s.update({"model.layers.0.self_attn.q_norm.weight": torch.zeros(0)})),
        "q_norm.weight is empty",
    ),
    "1-D embedding": (
        lambda t: saved_with(t, lambda s: s.update({"model.embed_tokens.weight": torch.zeros(64)})),
        "expected a 2-D tensor",
    ),
    "NaN weights": (
        lambda t: saved_with(t, lambda s: s["model.layers.1.self_attn.o_proj.weight"].fill_(float("nan"))),
        "model.layers.1.self_attn.o_proj.weight holds NaN or infinite values",
    ),
    "integer weights": (
        lambda t: saved_with(t, lambda s: s.update({"model.norm.weight": s["model.norm.weight"].to(torch.int16)})),
        "model.norm.weight holds int16 values",
    ),
    "config a list": (lambda t: folder_with(t, lambda f: edit_json(f / "config.json", lambda c: [c])), "a list"),
    "string for a number": (
        lambda t: folder_with(t, lambda f: edit_json(f / "config.json", lambda c: {**c, "hidden_size": "64"})),
        "hidden_size must be an integer, got '64'",
    ),
    "zero heads": (
        lambda t: folder_with(t, lambda f: edit_json(f / "config.json", lambda c: {**c, "num_attention_heads": 0})),
        "num_attention_heads must be at least 1",
    ),
    "vision config a list": (
        lambda t: folder_with(t, lambda f: edit_json(f / "vision" / "config.json", lambda c: [c])),
        "a list, expected a JSON object",
    ),
    "huge preprocessor size": (
        lambda t: folder_with(
            t,
            lambda f: edit_json(
                f / "vision" / "preprocessor_config.json", lambda c: {**c, "size": {"height": 10**7, "width": 10**7}}
            ),
        ),
        "does not match the encoder's 256x256 images",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_malformed_models_are_one_line(tmp_path, case):
    make, message = BAD_MODELS[case]
    model = make(tmp_path)
    result = run_cli(["chat", "--model", model, "--tokenizer", str(TOKENIZER_DIR), "--prompt", "hi"])
    assert message in one_line_refusal(result)


def test_convert_never_writes_integer_weights(tmp_path):
    source = saved_with(tmp_path, lambda s: s.update({"lm_head.weight": s["lm_head.weight"].to(torch.int64)}))
    result = run_cli(["convert", source, "--to", "pth", "--out", str(tmp_path / "out.pth"), "--dtype", "float16"])
    assert "lm_head.weight holds int64 values" in one_line_refusal(result)
    assert not (tmp_path / "out.pth").exists()
