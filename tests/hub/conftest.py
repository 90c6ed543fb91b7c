"""The loopback fake Hub / ModelScope server, and a clean environment pointing mmv and huggingface_hub at it."""

from __future__ import annotations

import pytest

from tests.hub.fake_hub import FakeHub, new_hub, start


def point_at(monkeypatch: pytest.MonkeyPatch, tmp_path, hub: FakeHub) -> None:
    """An empty mmv cache, no saved Hub login, and HF_ENDPOINT on the fake server."""
    monkeypatch.setenv("MMV_HOME", str(tmp_path / "mmv-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    hub = new_hub()
    server, thread = start(hub)
    point_at(monkeypatch, tmp_path, hub)
    yield hub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
