"""One file's transfer against a server that sends more (or less) than it listed, or names odd paths."""

from __future__ import annotations

import hashlib

import pytest

from mmv.errors import MmvError
from mmv.hub import cache
from mmv.hub.fetch import FetchOptions, download
from mmv.hub.transfer import RemoteFile, Transfer, fetch, part_path
from tests.hub.fake_hub import FakeHub

SOURCES = ["hf", "modelscope"]
MODEL = "model.safetensors"


def options(source: str, hub: FakeHub, **kw) -> FetchOptions:
    return FetchOptions(source=source, endpoint=hub.url if source == "modelscope" else None, **kw)


def served(hub: FakeHub, source: str, path: str) -> bytes:
    table, owner = (hub.hf, "jingyaogong") if source == "hf" else (hub.modelscope, "gongjy")
    return table[("model", f"{owner}/siglip2-base-p32-256-ve")].files[path]


class Written:
    """A progress sink (the part of rich's Progress that downloads use) that keeps each file's high-water mark."""

    def __init__(self) -> None:
        self.now: dict[int, int] = {}
        self.most: dict[int, int] = {}
        self.names: dict[int, str] = {}

    def add_task(self, description: str, total: int) -> int:
        task = len(self.names)
        self.names[task], self.now[task], self.most[task] = description, 0, 0
        return task

    def advance(self, task: int, n: int) -> None:
        self.now[task] += n
        self.most[task] = max(self.most[task], self.now[task])

    def high_water(self, name: str) -> int:
        return max(self.most[t] for t, n in self.names.items() if n == name)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("victim", [MODEL, "config.json"])
@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-length"])
def test_a_body_longer_than_listed_stops_at_the_listed_size(fake_hub, source, victim, announced):
    # 1 GiB of junk after the file: a client that kept reading would take minutes and fill the disk.
    fake_hub.oversize[victim] = (1 << 30, announced)
    size = len(served(fake_hub, source, victim))
    written = Written()
    with pytest.raises(MmvError, match=rf"sent more than the .* listed for {victim}; the download was discarded"):
        download("siglip2", options(source, fake_hub), progress=written)
    assert written.high_water(victim) <= size
    assert fake_hub.sent[victim] < size + (256 << 20)  # it stopped reading, so the server could not go on
    assert cache.find("siglip2") is None and not list(cache.cache_root().rglob("*.part"))

    fake_hub.oversize.clear()
    assert download("siglip2", options(source, fake_hub)).files == 3


@pytest.mark.parametrize("source", SOURCES)
def test_a_listed_size_smaller_than_the_file_is_refused(fake_hub, source):
    fake_hub.lies[(MODEL, "size")] = 1000
    with pytest.raises(MmvError, match=rf"sent more than the 1.0 kB listed for {MODEL}"):
        download("siglip2", options(source, fake_hub))
    assert cache.find("siglip2") is None and not list(cache.cache_root().rglob("*.part"))


@pytest.mark.parametrize("source", SOURCES)
def test_a_listed_size_larger_than_the_file_fails_verification(fake_hub, source):
    size = len(served(fake_hub, source, MODEL))
    fake_hub.lies[(MODEL, "size")] = size + 10
    with pytest.raises(MmvError, match=rf"{MODEL} failed verification \(expected {size + 10} bytes, got {size}\)"):
        download("siglip2", options(source, fake_hub, retries=0))
    assert cache.find("siglip2") is None and not list(cache.cache_root().rglob("*.part"))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("lie", ["bytes 0-999/1000", "bytes 100000-", "garbage\r\nX-Injected: 1"])
def test_a_resume_answered_with_another_byte_range_is_refused(fake_hub, source, lie):
    fake_hub.drop[MODEL] = (200_000, 1)
    fake_hub.lies[(MODEL, "content-range")] = lie
    with pytest.raises(MmvError, match=rf"answered a resume of {MODEL} with the wrong byte range"):
        download("siglip2", options(source, fake_hub))
    assert cache.find("siglip2") is None


def test_the_partial_file_name_is_never_what_the_server_sent():
    hostile = RemoteFile("x", "http://h/x", 10, sha256="../../../etc/passwd", git_sha1="/tmp/evil")
    assert len(hostile.key) == 64 and all(c in "0123456789abcdef" for c in hostile.key)
    # Tied to the content: the same hash and size give the same key wherever the file is served from.
    a = RemoteFile("x", "http://a/x", 10, sha256="ab" * 32)
    assert a.key == RemoteFile("y", "http://b/y", 10, sha256="ab" * 32).key != RemoteFile("x", "http://a/x", 11).key


@pytest.mark.parametrize("path", ["../escaped", "/etc/passwd", "a/../../b", "a\\..\\b", ".parts/x.part"])
def test_fetch_refuses_a_path_outside_the_staging_folder(tmp_path, path):
    staging = tmp_path / "home" / "staging"
    staging.mkdir(parents=True)
    remote = RemoteFile(path, "http://127.0.0.1:9/never-requested", 1, sha256=hashlib.sha256(b"x").hexdigest())
    transfer = Transfer(session=None, headers={}, check=lambda response, remote: None)
    with pytest.raises(MmvError, match=r"unsafe file path"):
        fetch(transfer, remote, staging)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["home", "home/staging"]


def test_fetch_refuses_a_folder_that_links_outside(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "sub").symlink_to(tmp_path)
    remote = RemoteFile("sub/x", "http://127.0.0.1:9/never-requested", 1)
    transfer = Transfer(session=None, headers={}, check=lambda response, remote: None)
    with pytest.raises(MmvError, match=r"would be written outside"):
        fetch(transfer, remote, staging)
    assert not part_path(staging, remote).exists()
