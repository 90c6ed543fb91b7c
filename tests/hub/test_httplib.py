"""The HTTP library follows huggingface_hub's session, and the downloads work on both ends of the declared range.

The installed huggingface_hub (the newest release pyproject.toml allows, on httpx2, in CI) runs all of tests/hub;
the oldest release it allows (1.x, on httpx) runs the download flows below in a process of their own, installed
apart (tests/dependency_range.py), so a change that only works on one of the two libraries fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.utils import get_session, set_client_factory
from packaging.version import Version

from mmv.errors import MmvError
from mmv.hub.httplib import library
from tests.dependency_range import installed_release, oldest_supported

ROOT = Path(__file__).resolve().parents[2]
# The flows that touch the HTTP library: listing and fetching from both sources, resume, every error class, the
# timeouts (one per kind: the per-route ones in test_limits repeat the listing's), and the checks above.
ON_THE_OLDEST = [
    "tests/hub/test_httplib.py",
    "tests/hub/test_fetch.py",
    "tests/hub/test_transfer.py",
    "tests/hub/test_limits.py",
    "--deselect=tests/hub/test_limits.py::test_each_listing_request_times_out",
    "--deselect=tests/hub/test_httplib.py::test_downloads_work_on_the_oldest_huggingface_hub",
]
RUN_S = 300  # the selection takes well under a minute; only so that a hang fails instead of stalling the suite


@pytest.fixture
def client_factory():
    """Lets a test install its own huggingface_hub client factory, and puts the default one back afterwards."""
    from huggingface_hub.utils._http import default_client_factory

    yield set_client_factory
    set_client_factory(default_client_factory)


def test_the_library_is_the_one_huggingface_hub_is_built_on():
    expected = "httpx" if Version(huggingface_hub.__version__).major == 1 else "httpx2"
    assert library().__name__ == expected, huggingface_hub.__version__
    assert isinstance(get_session(), library().Client)


def test_a_client_subclass_from_set_client_factory_decides_too(client_factory):
    own = library()

    class Proxied(own.Client):  # defined here, so only its base class names the library
        pass

    client_factory(lambda: Proxied(follow_redirects=True))
    assert type(get_session()) is Proxied
    assert library() is own


def test_a_client_of_another_library_is_one_clear_error(client_factory):
    class Foreign:
        def close(self) -> None:
            pass

    client_factory(Foreign)
    with pytest.raises(MmvError, match=r"session is a .*Foreign, not an httpx or httpx2 client"):
        library()


@pytest.mark.slow
def test_downloads_work_on_the_oldest_huggingface_hub():
    version = oldest_supported("huggingface_hub")
    assert Version(version).major == 1, "the oldest declared huggingface_hub should be a 1.x (httpx) release"
    target = installed_release("huggingface_hub", version)
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)
    # Says which huggingface_hub the process imported before it runs the tests, so a stray install cannot pass.
    run = "import sys, huggingface_hub, pytest; print(huggingface_hub.__version__, flush=True); sys.exit(pytest.main())"
    command = [sys.executable, "-c", run, "-q", "-p", "no:cacheprovider", *ON_THE_OLDEST]
    # that test builds its encoder folders with transformers, whose installed (newest) release needs huggingface_hub
    # 2.x; the download it then makes goes through the same calls as the listing tests that do run
    command += ["-k", "not test_public_encoders_come_from_their_publishers_repository"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert Version(done.stdout.splitlines()[0]) == Version(version), output[-4000:]
    assert " passed" in output and "skipped" not in output, output[-4000:]
