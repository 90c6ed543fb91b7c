"""`mmv convert --force` killed at any rename: the output is the old one or the new one, never neither; the next
conversion to the same output cleans what was left and puts back an output a crash moved aside."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR
from tests.convert.test_convert_cli import leftovers
from tests.faults import Crash, crash_at_rename, gone, mmv_killed_at_rename, mmv_renames

MODEL = str(REFERENCE / "p32" / "model_fp16.pth")


def to_transformers(out, *flags: str) -> list[str]:
    return ["convert", MODEL, "--to", "transformers", "--out", str(out), "--tokenizer", str(TOKENIZER_DIR), *flags]


def a_users_folder(out):
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    return out


def what_a_reader_finds(out) -> str | None:
    """ "old" (the user's folder), "new" (a whole converted folder), or None (nothing at `out`)."""
    if not out.exists():
        return None
    if json.loads((out / "config.json").read_text()) == {"mine": True}:
        return "old"
    assert load_file(str(out / "model.safetensors"))  # complete: every tensor readable
    return "new"


def test_force_killed_between_its_two_renames_is_put_back_by_the_next_conversion(tmp_path, monkeypatch):
    """Where the filesystem cannot exchange two folders, --force moves the old output aside, then the new one in."""
    out = a_users_folder(tmp_path / "out")
    with crash_at_rename(monkeypatch, None, exchange=False) as renames:
        assert run_cli(to_transformers(tmp_path / "probe")).exit_code == 0
    second = renames.index(str(tmp_path / "probe")) + 1  # the first rename aside is only for a replaced output
    with pytest.raises(Crash), crash_at_rename(monkeypatch, second + 1, exchange=False):
        run_cli(to_transformers(out, "--force"))
    assert what_a_reader_finds(out) is None and len(leftovers(tmp_path)) == 1  # the crash window itself
    gone(monkeypatch)
    again = run_cli(to_transformers(out))
    assert (
        again.exit_code == 2
        and "already exists and is not empty; force the conversion to replace it (option: --force)" in again.stderr
    )
    assert again.stderr.count("put back") == 1 and str(out) in again.stderr
    assert what_a_reader_finds(out) == "old" and leftovers(tmp_path) == []
    assert run_cli(to_transformers(out, "--force")).exit_code == 0
    assert what_a_reader_finds(out) == "new" and leftovers(tmp_path) == []


@pytest.mark.slow
def test_force_killed_at_each_rename_leaves_the_old_output_or_the_new(tmp_path):
    """A real SIGKILL before each rename `mmv convert --force` makes, then the next conversion."""
    out = a_users_folder(tmp_path / "out")
    args = to_transformers(out, "--force")
    done, renames = mmv_renames(args, tmp_path / "renames.log")
    assert done.returncode == 0, done.stderr
    assert renames[-1] == str(out)
    for n in range(1, len(renames) + 1):
        shutil.rmtree(out)
        a_users_folder(out)
        killed = mmv_killed_at_rename(args, n)
        assert killed.returncode == -9, killed.stderr
        assert what_a_reader_finds(out) == "old", n  # killed before the new output was swapped in
        assert run_cli(args).exit_code == 0  # and the next conversion cleans what the killed one left
        assert what_a_reader_finds(out) == "new" and leftovers(tmp_path) == []
