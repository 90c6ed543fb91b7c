"""The chat page in a real headless Chromium (Debian's), driven by Playwright: a person's whole session."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx2
import pytest

from tests.serve.conftest import API_KEY, PHOTOS, synth_clip

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium keeps dialling out, and this closed network refuses it
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("needs Debian's chromium: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

DROP_FILE = """([name, data, type]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    return transfer;
}"""


@pytest.fixture
def page(server, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        # the page's own policy forbids eval, which Playwright's waiting predicates use
        page = browser.new_page(viewport={"width": 1000, "height": 760}, bypass_csp=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(server.url + "/")
        assert "default-src 'self'" in response.headers["content-security-policy"]  # nothing from elsewhere
        yield page
        browser.close()
        assert not errors, errors


def set_value(page, selector: str, value: str) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_for_replies(page, count: int):
    page.wait_for_function(f"document.querySelectorAll('.message.assistant .stats').length >= {count}", timeout=60_000)
    return page.locator(".message.assistant").nth(count - 1)


def transfer(page, path: Path, mime: str = "image/jpeg"):
    return page.evaluate_handle(DROP_FILE, [path.name, base64.b64encode(path.read_bytes()).decode(), mime])


def greedy_settings(page, max_tokens: int) -> None:
    page.click("#settings-toggle")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    set_value(page, "#temperature", "0")
    page.fill("#max-tokens", str(max_tokens))


def test_a_person_chats_about_two_images_stops_a_reply_and_starts_over(server, page, tmp_path):
    greedy_settings(page, 24)

    # turn 1: an image attached with the button, a question sent with Enter
    page.set_input_files("#file", str(PHOTOS[0]))
    page.wait_for_function("document.querySelectorAll('#attachments img').length === 1")  # read asynchronously
    page.fill("#prompt", "What is in this image?")
    page.press("#prompt", "Shift+Enter")  # a newline, not a send
    assert page.locator(".message").count() == 0
    page.keyboard.type("Describe it briefly.")
    page.press("#prompt", "Enter")
    first = wait_for_replies(page, 1)
    assert page.locator(".message.user .images img").count() == 1 and page.locator("#attachments img").count() == 0
    assert first.locator(".bubble").inner_text().strip()
    assert "first token" in first.locator(".stats").inner_text() and "tokens/s" in first.locator(".stats").inner_text()

    # turn 2: one image pasted, one dropped on the page; the history's keys/values are reused
    page.evaluate(
        "t => document.getElementById('prompt').dispatchEvent("
        "new ClipboardEvent('paste', { clipboardData: t, bubbles: true, cancelable: true }))",
        transfer(page, PHOTOS[3]),
    )
    page.dispatch_event("body", "drop", {"dataTransfer": transfer(page, PHOTOS[5])})
    page.wait_for_function("document.querySelectorAll('#attachments img').length === 2")
    send(page, "And how do these two differ?")
    second = wait_for_replies(page, 2)
    assert "history tokens reused" in second.locator(".stats").inner_text()
    assert page.locator(".message.user .images img").count() == 3
    page.screenshot(path=str(tmp_path / "conversation.png"))

    # a long reply, stopped mid-way: the row is freed on the server
    page.fill("#max-tokens", "2000")
    send(page, "Now tell me a very long story about both pictures.")
    page.wait_for_function(
        "document.querySelectorAll('.message.assistant .bubble').length === 3 && "
        "document.querySelectorAll('.message.assistant .bubble')[2].textContent.length > 10"
    )
    page.click("#stop")
    third = wait_for_replies(page, 3)
    assert "stopped" in third.locator(".stats").inner_text()
    page.wait_for_function("!document.getElementById('send').hidden")
    page.screenshot(path=str(tmp_path / "stopped.png"))
    assert httpx2.get(f"{server.url}/health").json()["decoding"] == 0 or wait_idle(server)

    # an API error shows in the page
    page.fill("#max-tokens", "999999")
    send(page, "Hello?")
    page.wait_for_selector(".message.error")
    assert "limit of 2048" in page.locator(".message.error").inner_text()

    # a new chat starts empty
    page.click("#new-chat")
    assert page.locator(".message").count() == 0 and page.locator("#empty").is_visible()
    page.screenshot(path=str(tmp_path / "new-chat.png"))


def test_a_person_asks_about_a_video_attached_by_button_then_about_one_dropped(server, page, tmp_path):
    greedy_settings(page, 12)
    first_clip, second_clip = tmp_path / "slide.mp4", tmp_path / "other.mp4"
    first_clip.write_bytes(synth_clip(3))
    second_clip.write_bytes(synth_clip(4))

    page.set_input_files("#file", str(first_clip))
    page.wait_for_function("document.querySelectorAll('#attachments video').length === 1")  # a muted thumbnail
    assert page.locator("#attachments video").evaluate("v => v.muted")
    send(page, "Which way does the shape move?")
    first = wait_for_replies(page, 1)
    assert first.locator(".bubble").inner_text().strip() and "tokens/s" in first.locator(".stats").inner_text()
    assert page.locator(".message.user .images video").count() == 1

    page.dispatch_event("body", "drop", {"dataTransfer": transfer(page, second_clip, "video/mp4")})
    page.wait_for_function("document.querySelectorAll('#attachments video').length === 1")
    send(page, "And in this one?")
    second = wait_for_replies(page, 2)
    assert "history tokens reused" in second.locator(".stats").inner_text()  # the first clip's frames included
    assert page.locator(".message.user .images video").count() == 2
    page.screenshot(path=str(tmp_path / "video.png"))


def wait_idle(server) -> bool:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if httpx2.get(f"{server.url}/health").json()["decoding"] == 0:
            return True
        time.sleep(0.05)
    return False
