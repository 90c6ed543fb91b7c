"""Starting and stopping `mmv serve`: image URLs when allowed, SIGTERM with requests in flight, the extra missing."""

from __future__ import annotations

import http.server
import signal
import sys
import threading
import time

import pytest

from tests.cli.conftest import run_cli
from tests.serve.conftest import PHOTOS, image_part, noise_png, start_server


class ImageHost(http.server.ThreadingHTTPServer):
    """A loopback web server with one photo, one oversize image and a redirect to a local file."""

    def __init__(self) -> None:
        files = {"/photo.jpg": PHOTOS[0].read_bytes(), "/big.png": noise_png(700, 700)}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/to-file":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.end_headers()
                    return
                body = files.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(scope="module")
def url_server():
    running = start_server("--allow-image-urls", "--max-image-mb", "1")
    yield running
    running.stop()


def ask_about(server, url: str):
    content = [image_part(url), {"type": "text", "text": "What is it?"}]
    return server.client().chat.completions.create(
        model="model", messages=[{"role": "user", "content": content}], temperature=0, max_tokens=4
    )


def test_image_urls_are_fetched_only_with_the_flag_and_within_limits(url_server):
    import openai

    host = ImageHost()
    try:
        assert ask_about(url_server, host.url("/photo.jpg")).usage.prompt_tokens > 64
        for path, says in [
            ("/big.png", "1 MB image limit"),
            ("/missing.jpg", "HTTP 404"),
            ("/to-file", "refused"),
        ]:
            with pytest.raises(openai.BadRequestError, match=says):
                ask_about(url_server, host.url(path))
    finally:
        host.shutdown()


def test_sigterm_with_requests_in_flight_ends_them_and_exits_0(url_server):
    client = url_server.client()
    outcomes: list[str] = []

    def long_reply() -> None:
        stream = client.chat.completions.create(
            model="model", messages=[{"role": "user", "content": "Talk."}], max_tokens=2000, stream=True
        )
        try:
            for _ in stream:
                pass
            outcomes.append("finished")
        except Exception as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=long_reply) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    signalled = time.monotonic()
    url_server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(15)
    ended = time.monotonic() - signalled
    assert url_server.process.wait(30) == 0
    assert len(outcomes) == 3 and all("shutting down" in o or o == "finished" for o in outcomes), outcomes
    assert ended < 8  # the three replies were ended within the 3 s grace, not run to their 2000 tokens
    assert "stopped after" in "".join(url_server.stderr)


def test_binding_beyond_loopback_without_a_key_warns(tmp_path):
    result = run_cli(["serve", "--model", str(tmp_path / "missing.pth"), "--host", "0.0.0.0"])
    assert "without --api-key" in result.stderr
    assert result.exit_code == 2  # then the missing model stops it before anything listens


def test_without_the_serve_extra_one_line_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    monkeypatch.delitem(sys.modules, "mmv.serve.server", raising=False)
    result = run_cli(["serve", "--model", str(tmp_path / "m.pth")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: mmv serve needs the serve extra: pip install 'mmv[serve]'"
