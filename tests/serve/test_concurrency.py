"""Many clients at once: batched replies equal solo ones, a client that leaves frees its row at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2

from tests.serve.conftest import FIXTURE_IMAGE, PHOTOS, image_part, image_uri

CLIENTS = 16  # twice the server's --max-batch 8: half of them wait for a free row and join a running batch


def request(index: int) -> dict:
    """Sixteen different requests: with and without an image, short and long questions and budgets."""
    question = ["What is in this image?", "Describe it.", "Hi", "Name three colours in the picture, please."][index % 4]
    if index % 2:
        image = [*PHOTOS, FIXTURE_IMAGE][index % (len(PHOTOS) + 1)]
        content = [image_part(image_uri(image)), {"type": "text", "text": question}]
    else:
        content = f"{question} (request {index})"
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 6 + 5 * (index % 5)}


def greedy(client, body: dict, barrier: threading.Barrier | None = None) -> str:
    if barrier is not None:
        barrier.wait()
    stream = client.chat.completions.create(model="model", temperature=0, stream=True, **body)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    return text


def test_sixteen_clients_at_once_get_their_solo_replies(server):
    client = server.client()
    bodies = [request(i) for i in range(CLIENTS)]
    alone = [greedy(client, body) for body in bodies]
    barrier = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(lambda body: greedy(server.client(), body, barrier), bodies))
    assert together == alone
    assert len(set(alone)) > CLIENTS // 2  # the requests really differ
    health = httpx2.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["decoding"] == 0


def test_a_client_that_disconnects_frees_its_row_and_stalls_no_one(server):
    client = server.client()
    long = client.chat.completions.create(
        model="model",
        messages=[{"role": "user", "content": "Talk for a long time."}],
        temperature=0,
        max_tokens=2000,
        stream=True,
    )
    for _, _chunk in zip(range(3), long, strict=False):
        pass
    assert httpx2.get(f"{server.url}/health").json()["decoding"] >= 1
    long.close()  # the client goes away mid-reply
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        short = list(pool.map(lambda i: greedy(server.client(), request(i)), range(4)))
    assert all(short) and time.monotonic() - started < 30
    deadline = time.monotonic() + 5
    while httpx2.get(f"{server.url}/health").json()["decoding"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # the abandoned reply had ~2000 tokens to go (many seconds); its row is free well before that
    assert httpx2.get(f"{server.url}/health").json()["decoding"] == 0
