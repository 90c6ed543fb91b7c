"""Crash-safe writes: the old file survives a failed write; devices are never replaced."""

from __future__ import annotations

import os

import pytest

from mmv.errors import MmvError
from mmv.fsio import (
    atomic_path,
    atomic_write_text,
    check_writable,
    refuse_input_as_output,
    replace_dir,
    staged_folder,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_success_replaces_with_plain_permissions(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_device_is_never_replaced():
    with pytest.raises(MmvError, match="not a regular file"), atomic_path("/dev/null"):
        pass
    assert not os.path.isfile("/dev/null")


def test_replace_dir_swaps_whole_folders(tmp_path):
    final, staged = tmp_path / "name", tmp_path / ".staged"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    replace_dir(staged, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["name"]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_staged_folder_gets_plain_mkdir_permissions(tmp_path):
    """mkdtemp makes private (0700) folders; a finished one must look like any folder the user made."""
    with staged_folder(tmp_path / "tokenizer") as staged:
        (staged / "a.json").write_text("{}")
    assert (tmp_path / "tokenizer").stat().st_mode & 0o777 == 0o777 & ~umask()
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "tokenizer") as staged:
        (staged / "b.json").write_text("{}")
        raise RuntimeError("failed half way")
    assert [p.name for p in (tmp_path / "tokenizer").iterdir()] == ["a.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]


def test_an_output_that_is_an_input_is_refused_naming_both(tmp_path):
    data = tmp_path / "data.parquet"
    data.write_bytes(b"rows")
    (tmp_path / "alias.parquet").symlink_to(data)
    os.link(data, tmp_path / "hard.parquet")
    for out in (data, tmp_path / "." / "data.parquet", tmp_path / "alias.parquet", tmp_path / "hard.parquet"):
        with pytest.raises(MmvError, match=f"--out {out} is the input {data}"):
            refuse_input_as_output(out, [tmp_path / "other.parquet", data])
    refuse_input_as_output(tmp_path / "new.jsonl", [data])
    assert data.read_bytes() == b"rows"


def test_check_writable_refuses_what_cannot_be_written_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MmvError, match=f"cannot write {tmp_path / 'file' / 'out.jsonl'}: "):
        check_writable(tmp_path / "file" / "out.jsonl")
    with pytest.raises(MmvError, match="not a regular file"):
        check_writable(tmp_path)
    check_writable(tmp_path / "sub" / "out.jsonl")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == []
