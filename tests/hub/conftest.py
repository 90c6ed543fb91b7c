"""The loopback fake Hub / ModelScope server (tests/hub/fake_hub.py) as a fixture."""

from __future__ import annotations

import pytest

from tests.hub.fake_hub import running


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    with running(monkeypatch, tmp_path) as hub:
        yield hub
