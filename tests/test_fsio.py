"""Crash-safe writes: the old file survives a failed write; devices are never replaced."""

from __future__ import annotations

import os

import pytest

from mmv.errors import MmvError
from mmv.fsio import atomic_path, atomic_write_text, replace_dir


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
