"""A server that accepts and then says nothing, or stops mid-file, or answers forever: every request gives up.

The timeouts are short here (FetchOptions.timeouts) so each case takes seconds, yet long enough that the fake's
real answers (a few kB over loopback) arrive in time on a busy machine; the assertions on time are loose upper
bounds that only catch "waited for the defaults" or "waited forever".
"""

from __future__ import annotations

import socket
import time

import pytest

from mmv.errors import MmvError
from mmv.hub import cache
from mmv.hub.fetch import FetchOptions, download
from mmv.hub.limits import Timeouts
from tests.hub.fake_hub import FakeHub

SOURCES = ["hf", "modelscope"]
MODEL = "model.safetensors"
SHORT = Timeouts(connect_s=2.0, read_s=2.0, silence_s=4.0)
NEVER = 30.0  # far above SHORT, far below the defaults' retries: a bound that only a hang or the defaults exceed


def options(source: str, url: str, **kw) -> FetchOptions:
    return FetchOptions(source=source, endpoint=url, timeouts=SHORT, **kw)


@pytest.fixture
def mute_server():
    """Accepts connections (the kernel completes them) and never reads or answers a byte."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("source", SOURCES)
def test_a_server_that_never_answers_times_out_the_listing(mute_server, source, tmp_path, monkeypatch):
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "home"))
    start = time.monotonic()
    with pytest.raises(MmvError, match=rf"{mute_server} sent nothing for 2 s \(ReadTimeout\) while listing"):
        download("siglip2", options(source, mute_server))
    assert time.monotonic() - start < NEVER
    assert cache.find("siglip2") is None


@pytest.mark.parametrize(("source", "route"), [("hf", "hf-info"), ("hf", "hf-tree"), ("modelscope", "ms-listing")])
def test_each_listing_request_times_out(fake_hub: FakeHub, source, route):
    fake_hub.hang.add(route)
    start = time.monotonic()
    with pytest.raises(MmvError, match=r"sent nothing for 2 s \(ReadTimeout\) while listing .*check the network"):
        download("siglip2", options(source, fake_hub.url))
    assert time.monotonic() - start < NEVER


@pytest.mark.parametrize("source", SOURCES)
def test_a_stalled_body_gives_up_after_the_silence_limit_and_keeps_its_bytes(fake_hub: FakeHub, source):
    fake_hub.stall[MODEL] = 100_000  # then silence, also when asked to resume from there
    start = time.monotonic()
    with pytest.raises(MmvError, match=rf"no data arrived for \d+ s while downloading {MODEL} .*same command resumes"):
        download("siglip2", options(source, fake_hub.url))
    assert time.monotonic() - start < NEVER
    assert fake_hub.ranges(MODEL)[0] is None and "bytes=100000-" in fake_hub.ranges(MODEL)  # it did retry
    owner = "jingyaogong" if source == "hf" else "gongjy"
    config = (fake_hub.hf if source == "hf" else fake_hub.modelscope)[("model", f"{owner}/siglip2-base-p32-256-ve")]
    kept = len(config.files["config.json"]) + 100_000  # config.json comes first, whole; then the stalled file's part
    assert cache.partial_downloads() == [cache.Partial("siglip2-p32-256", None, kept)]

    fake_hub.stall.clear()
    fake_hub.release.set()
    assert download("siglip2", options(source, fake_hub.url)).files == 3
    assert fake_hub.ranges(MODEL)[-1] == "bytes=100000-"


def test_the_defaults_give_up_well_within_a_minute():
    defaults = Timeouts()
    # A stalled download retries only while the silence so far plus the next wait stays under silence_s, and each
    # retry's timeouts are cut to what is left: the longest silence mmv sits through is silence_s.
    assert defaults.silence_s <= 30 and defaults.read_s < defaults.silence_s and defaults.connect_s < defaults.silence_s
    assert FetchOptions().timeouts == defaults
    cut = defaults.httpx(cap_s=3.0)
    assert (cut.connect, cut.read) == (3.0, 3.0)


def test_a_metadata_answer_larger_than_the_limit_is_refused(fake_hub: FakeHub, monkeypatch):
    monkeypatch.setattr("mmv.hub.limits.LISTING_BYTES", 4096)
    fake_hub.raw_listing = b"[" + b" " * 10_000 + b"]"
    with pytest.raises(MmvError, match=r"127.0.0.1 sent more than 4.1 kB for the file listing of"):
        download("minimind-3v", options("hf", fake_hub.url))
