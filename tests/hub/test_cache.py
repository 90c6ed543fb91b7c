"""The cache API other commands resolve names through."""

from __future__ import annotations

import pytest

from mmv.errors import MmvError
from mmv.hub import cache


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_root_follows_mmv_home(home):
    assert cache.cache_root() == home


def test_root_defaults_to_platform_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv("MMV_HOME", raising=False)
    assert str(cache.cache_root()) == platformdirs.user_cache_dir("mmv")


def test_missing_name_resolves_to_command(home):
    assert cache.find("minimind-3v") is None
    with pytest.raises(MmvError, match=r"minimind-3v is not downloaded; run `mmv download minimind-3v`"):
        cache.resolve("minimind-3v")


def test_alias_and_specs_map_to_one_directory(home):
    (home / "siglip2-p32-256").mkdir(parents=True)
    assert cache.find("siglip2") == cache.find("siglip2-p32-256") == home / "siglip2-p32-256"
    assert cache.dir_name("hf:a/b/sub/x.bin@v1") == "hf--a--b--sub--x.bin@v1"
    assert cache.dir_name("hf-dataset:a/b") == "hf-dataset--a--b"


@pytest.mark.parametrize("bad", ["../etc", ".staging", "a/b", "a\\b", ""])
def test_names_that_would_leave_the_cache_are_rejected(home, bad):
    with pytest.raises(MmvError, match="invalid cache name"):
        cache.find(bad)


def test_install_is_atomic_replace_and_remove(home):
    staged = cache.staging_dir("llm")
    staged.mkdir(parents=True)
    (staged / "llm_768.pth").write_bytes(b"one")
    final = cache.install("llm", staged, {"name": "llm"})
    assert final == cache.resolve("llm") and not staged.exists()
    assert (final / "llm_768.pth").read_bytes() == b"one"

    staged.mkdir(parents=True)
    (staged / "llm_768.pth").write_bytes(b"two")
    cache.install("llm", staged, {"name": "llm"})
    assert (final / "llm_768.pth").read_bytes() == b"two"
    assert [e.name for e in cache.entries()] == ["llm"]
    assert sorted(p.name for p in home.iterdir()) == [".staging", "llm"]

    cache.remove("llm")
    assert cache.find("llm") is None and cache.entries() == []
    with pytest.raises(MmvError, match="not in the cache"):
        cache.remove("llm")


def test_an_install_killed_between_its_renames_keeps_the_old_copy_findable(home, monkeypatch, capsys):
    """Where the OS cannot exchange two folders, the old copy is moved aside first: a crash then leaves the name
    missing. The next lookup puts the old copy back (and says so); the next install replaces it as usual."""
    from tests.faults import Crash, crash_at_rename, gone

    staged = cache.staging_dir("llm")
    staged.mkdir(parents=True)
    (staged / "llm_768.pth").write_bytes(b"old")
    final = cache.install("llm", staged, {"name": "llm"})
    staged.mkdir(parents=True)
    (staged / "llm_768.pth").write_bytes(b"new")
    # renames: the manifest (1), the old copy aside (2), the new one in (3): killed before the third
    with pytest.raises(Crash), crash_at_rename(monkeypatch, 3, exchange=False):
        cache.install("llm", staged, {"name": "llm"})
    assert not final.exists()  # the crash window itself
    gone(monkeypatch)
    assert cache.find("llm") == final and (final / "llm_768.pth").read_bytes() == b"old"
    assert "put back" in capsys.readouterr().err
    cache.install("llm", staged, {"name": "llm"})
    assert (final / "llm_768.pth").read_bytes() == b"new"
    assert sorted(p.name for p in home.iterdir()) == [".staging", "llm"]
