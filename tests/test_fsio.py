"""Crash-safe writes: the old file survives a failed write or a kill at any rename; devices are never replaced;
what a killed writer left is cleaned by the next write."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmv import fsio
from mmv.errors import MmvError
from mmv.fsio import (
    atomic_path,
    atomic_write_text,
    check_writable,
    exchange,
    recover,
    refuse_input_as_output,
    replace_dir,
    staged_folder,
    sweep,
)
from tests.faults import Crash, crash_at_rename, dead_pid, gone, killed_at_rename, strace_renames


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
        with pytest.raises(MmvError, match=f"^the output {out} is the input {data}") as refused:
            refuse_input_as_output(out, [tmp_path / "other.parquet", data])
        assert refused.value.options == ("out",)
    refuse_input_as_output(tmp_path / "new.jsonl", [data])
    assert data.read_bytes() == b"rows"


# --- crash windows: a kill at any rename leaves the old or the new target, and the next write cleans up ----------


def folder_with(path, text):
    path.mkdir()
    (path / "f.txt").write_text(text)
    return path


def seen(final) -> str | None:
    """What a reader finds at `final`: its text, or None when nothing is there."""
    return (final / "f.txt").read_text() if final.is_dir() else None


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_crash_at_any_rename_of_a_folder_replace_loses_nothing(tmp_path, monkeypatch, exchange):
    """Where the OS exchanges two entries atomically a reader never finds the folder missing; where it cannot, the
    old folder moved aside is put back by the next write (and said so), never lost. `None`: the crash comes after
    the last rename, before the old copy is deleted."""
    renames = 1 if exchange else 2
    for n in [*range(1, renames + 1), None]:
        case = tmp_path / f"{n}"
        case.mkdir()
        final = folder_with(case / "model", "old")
        with pytest.raises(Crash), crash_at_rename(monkeypatch, n, exchange), staged_folder(final) as staged:
            (staged / "f.txt").write_text("new")
            if n is None:
                monkeypatch.setattr(fsio, "remove_entry", crash)
        assert seen(final) is None if (n == 2 and not exchange) else seen(final) in ("old", "new")
        monkeypatch.undo()
        gone(monkeypatch)
        restored = recover(final).restored
        assert seen(final) == ("new" if n is None else "old")
        assert len(restored) == (n == 2 and not exchange)
        assert [p.name for p in case.iterdir()] == ["model"]
        monkeypatch.undo()
        with staged_folder(final) as staged:  # the next write works as if nothing had happened
            (staged / "f.txt").write_text("next")
        assert seen(final) == "next" and [p.name for p in case.iterdir()] == ["model"]


def crash(*args) -> None:
    raise Crash("killed")


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    a, b = folder_with(tmp_path / "a", "A"), folder_with(tmp_path / "b", "B")
    if not exchange(a, b):
        pytest.skip("this OS or filesystem cannot exchange two entries")
    assert (seen(a), seen(b)) == ("B", "A")


def test_temporaries_of_a_live_writer_are_left_alone(tmp_path):
    final = tmp_path / "out.json"
    mine = tmp_path / f".out.json.tmp-{os.getpid()}-abcd1234"
    dead = tmp_path / f".out.json.tmp-{dead_pid()}-abcd1234"
    other = tmp_path / f".other.json.tmp-{dead_pid()}-abcd1234"
    for path in (mine, dead, other):
        path.write_text("half")
    atomic_write_text(final, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", mine.name, other.name])
    assert sweep(tmp_path).lines(tmp_path) == [
        f"removed 1 temporary that an interrupted write left in {tmp_path} ({other.name})"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", mine.name])


def test_sweep_puts_back_what_a_crash_moved_aside(tmp_path):
    pid = dead_pid()
    folder_with(tmp_path / f".vision.old-{pid}-abcd1234", "old")
    folder_with(tmp_path / f".vision.tmp-{pid}-efgh5678", "half")
    (tmp_path / f".model.pth.tmp-{pid}-ijkl9012").write_bytes(b"half")
    (tmp_path / ".hidden").write_text("not ours")
    lines = sweep(tmp_path).lines(tmp_path)
    assert lines == [
        f"put back {tmp_path / 'vision'}, which an interrupted replace had moved aside to .vision.old-{pid}-abcd1234",
        f"removed 2 temporaries that an interrupted write left in {tmp_path} (.model.pth.tmp-{pid}-ijkl9012, "
        f".vision.tmp-{pid}-efgh5678)",
    ]
    assert seen(tmp_path / "vision") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "vision"]


WRITER = """
import sys
from pathlib import Path
from mmv.fsio import atomic_write_text, staged_folder
with staged_folder(Path("out")) as staged:
    (staged / "f.txt").write_text(sys.argv[1])
atomic_write_text(Path("out.txt"), sys.argv[1])
"""


def test_a_real_kill_at_each_rename_leaves_old_or_new(tmp_path):
    """SIGKILL (strace) just before each rename of a folder replace and a file write; the next run cleans up."""
    (tmp_path / "writer.py").write_text(WRITER)
    command = [sys.executable, "writer.py"]
    subprocess.run([*command, "old"], cwd=tmp_path, check=True)
    done, renames = strace_renames([*command, "new"], tmp_path / "trace.log", cwd=tmp_path)
    assert done.returncode == 0 and [r.target for r in renames][-2:] == ["out", "out.txt"], renames
    for rename in renames:
        subprocess.run([*command, "old"], cwd=tmp_path, check=True)
        killed = killed_at_rename([*command, "new"], rename, cwd=tmp_path)
        assert killed.returncode != 0
        assert seen(tmp_path / "out") in ("old", "new")
        assert (tmp_path / "out.txt").read_text() in ("old", "new")
        subprocess.run([*command, "again"], cwd=tmp_path, check=True)
        assert seen(tmp_path / "out") == (tmp_path / "out.txt").read_text() == "again"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.txt", "writer.py"]


def test_check_writable_refuses_what_cannot_be_written_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MmvError, match=f"cannot write {tmp_path / 'file' / 'out.jsonl'}: "):
        check_writable(tmp_path / "file" / "out.jsonl")
    with pytest.raises(MmvError, match="not a regular file"):
        check_writable(tmp_path)
    check_writable(tmp_path / "sub" / "out.jsonl")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == []
