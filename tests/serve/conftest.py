"""The real `mmv serve` in a subprocess on a free loopback port, on the p32 reference fixture model."""

from __future__ import annotations

import base64
import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IMAGES_DIR, REFERENCE, TOKENIZER_DIR

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

API_KEY = "test-key"
MODEL_ARGS = ["--model", str(REFERENCE / "p32" / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]
FIXTURE_IMAGE = REFERENCE / "p32" / "image.png"
PHOTOS = sorted(IMAGES_DIR.glob("*.jpg"))
START_TIMEOUT_S = 180


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    stderr: list[str] = field(default_factory=list)

    def client(self, api_key: str = API_KEY, **kwargs):
        from openai import OpenAI

        return OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_server(*args: str) -> Server:
    """Start `mmv serve --port 0 ...` and wait for the line that says where it listens."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mmv.cli.app", "serve", *MODEL_ARGS, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    found = threading.Event()

    def read_stderr() -> None:  # keep draining stderr so the server never blocks on a full pipe
        for line in process.stderr:
            lines.append(line)
            if "chat page http://" in line:
                found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mmv serve did not start: {''.join(lines)}")
    url = re.search(r"chat page (http://\S+?)/\s", "".join(lines)).group(1)
    return Server(process, url, lines)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One server for the API tests: an API key, small limits to test them, the default batch of 8."""
    running = start_server("--api-key", API_KEY, "--max-image-mb", "1", "--max-video-mb", "1", "--max-body-mb", "3")
    yield running
    running.stop()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_uri(path: Path) -> str:
    return data_uri(path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg")


def image_part(uri: str) -> dict:
    return {"type": "image_url", "image_url": {"url": uri}}


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: about width * height * 3 bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def stream_text(chunks) -> tuple[str, list]:
    chunks = list(chunks)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def synth_clip(seed: int = 3) -> bytes:
    """A 2 s MP4 clip of `mmv data synth --video`: one shape sliding across 8 frames."""
    from mmv.synth.scenes import BACKGROUNDS
    from mmv.synth.video import motion_clip, render

    scenes, _ = motion_clip(random.Random(seed))
    return render([[scene] for scene in scenes], BACKGROUNDS[0])
