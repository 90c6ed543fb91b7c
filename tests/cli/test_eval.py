"""`mmv eval` checks that its --out can be written before it loads a model or evaluates anything."""

from __future__ import annotations

from tests.conftest import REFERENCE, TOKENIZER_DIR

DATA = str(REFERENCE / "labels" / "single.parquet")
MODEL = [
    "--model",
    str(REFERENCE / "p32" / "model.pth"),
    "--vision",
    str(REFERENCE / "p32" / "vision"),
    "--tokenizer",
    str(TOKENIZER_DIR),
]


def test_an_unwritable_out_fails_before_the_model_is_even_looked_at(cli, tmp_path):
    """It used to fail only after the whole evaluation. The model named here does not exist: the error is about
    --out, so nothing was loaded."""
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "records.jsonl"
    result = cli(["eval", "--model", str(tmp_path / "absent.pth"), "--data", DATA, "--out", str(out)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: cannot write {out}: ") and len(result.stderr.splitlines()) == 1


def test_a_writable_out_is_written_and_the_check_leaves_nothing_behind(cli, tmp_path):
    out = tmp_path / "new" / "records.jsonl"
    result = cli(["eval", *MODEL, "--data", DATA, "--limit", "2", "--max-new-tokens", "2", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["records.jsonl"]
    assert len(out.read_text().splitlines()) == 2
