"""`mmv convert` from the command line: the JSON summary, and every refusal in one sentence with nothing written."""

from __future__ import annotations

import json
import shutil

import torch

from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR

MODEL = str(REFERENCE / "p32" / "model_fp16.pth")


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def assert_refused(result, *phrases: str) -> None:
    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message  # one sentence, no traceback
    for phrase in phrases:
        assert phrase in message, message


def test_json_summary_and_written_files(tmp_path):
    result = run_cli(
        [
            "convert",
            MODEL,
            "--to",
            "transformers",
            "--out",
            str(tmp_path / "tf"),
            "--tokenizer",
            str(TOKENIZER_DIR),
            "--with-vision",
            str(REFERENCE / "p32" / "vision"),
            "--dtype",
            "bfloat16",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["command"] == "convert" and summary["to"] == "transformers"
    assert summary["dtype"] == "bfloat16" and summary["variant"] == "p32-256" and not summary["use_moe"]
    assert summary["vision"] == str(REFERENCE / "p32" / "vision")
    files = [p for p in (tmp_path / "tf").rglob("*") if p.is_file()]
    assert summary["files"] == len(files) and summary["bytes"] == sum(p.stat().st_size for p in files)
    assert "wrote" in result.stderr and leftovers(tmp_path) == []
    config = json.loads((tmp_path / "tf" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["vision_subfolder"] == "vision"


def test_existing_output_is_refused_then_replaced_with_force(tmp_path):
    out = tmp_path / "model.pth"
    out.write_bytes(b"precious")
    args = ["convert", MODEL, "--to", "pth", "--out", str(out)]
    assert_refused(run_cli(args), "already exists", "(option: --force)")
    assert out.read_bytes() == b"precious"
    folder = tmp_path / "tf"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert_refused(
        run_cli(["convert", MODEL, "--to", "qwen3", "--out", str(folder), "--tokenizer", str(TOKENIZER_DIR)]),
        "not empty",
        "--force",
    )
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert run_cli([*args, "--force"]).exit_code == 0
    assert torch.load(out, weights_only=True)["lm_head.weight"].dtype == torch.float16
    assert leftovers(tmp_path) == []


def test_missing_tokenizer_is_refused(tmp_path):
    for target in ("transformers", "qwen3"):
        result = run_cli(["convert", MODEL, "--to", target, "--out", str(tmp_path / target)])
        assert_refused(result, "no tokenizer found", "--tokenizer")
        assert not (tmp_path / target).exists() and leftovers(tmp_path) == []


def test_wrong_variant_encoder_is_refused(tmp_path):
    result = run_cli(
        [
            "convert",
            MODEL,
            "--to",
            "transformers",
            "--out",
            str(tmp_path / "tf"),
            "--tokenizer",
            str(TOKENIZER_DIR),
            "--with-vision",
            str(REFERENCE / "naflex-merge4" / "vision"),
        ]
    )
    assert_refused(result, "p16-naflex encoder", "p32-256")
    assert not (tmp_path / "tf").exists()


def test_legacy_clip_checkpoint_is_refused(tmp_path):
    state = torch.load(REFERENCE / "p32" / "llm.pth", weights_only=True)
    state["vision_proj.vision_proj.0.weight"] = torch.zeros(64, 768)  # MiniMind2-V's single Linear projector
    torch.save(state, tmp_path / "legacy.pth")
    result = run_cli(["convert", str(tmp_path / "legacy.pth"), "--to", "pth", "--out", str(tmp_path / "x.pth")])
    assert_refused(result, "matches no generation")
    assert not (tmp_path / "x.pth").exists()


def test_bad_arguments_are_refused(tmp_path):
    assert_refused(run_cli(["convert", MODEL, "--to", "onnx", "--out", str(tmp_path / "x")]), "unknown target")
    assert_refused(
        run_cli(["convert", MODEL, "--to", "pth", "--out", str(tmp_path / "x"), "--dtype", "int8"]), "unknown dtype"
    )
    assert_refused(
        run_cli(["convert", str(tmp_path / "nope.pth"), "--to", "pth", "--out", str(tmp_path / "x")]), "does not exist"
    )
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_nothing_behind(tmp_path):
    """The encoder folder lacks its weights: found only after model.safetensors is written, yet nothing remains."""
    vision = tmp_path / "vision"
    vision.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(REFERENCE / "p32" / "vision" / name, vision / name)
    out = tmp_path / "out"
    result = run_cli(
        [
            "convert",
            MODEL,
            "--to",
            "transformers",
            "--out",
            str(out),
            "--tokenizer",
            str(TOKENIZER_DIR),
            "--with-vision",
            str(vision),
        ]
    )
    assert_refused(result, "lacks model.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["vision"]
