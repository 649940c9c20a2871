"""The webhook against hostile clients, over real HTTP on 127.0.0.1.

The attack of 2026-12-01: an unauthenticated POST with a 200 MB body grew the daemon from 63 to
854 MB (FastAPI read the body before the token was checked). Now the token is checked before a
byte of the body is read, a body over `[webhook] max_body` gets 413 without being read (by its
Content-Length, or part by part when it is chunked), and bad input (a lone surrogate, invalid
JSON, an id no task can have) gets 400, never 500. After all of it the webhook still works.
"""

from __future__ import annotations

import resource
import socket
import threading
import time

import httpx
import pytest

from clawfleet.channels.webhook import make_app
from clawfleet.llm.serve import BackgroundServer

TOKEN = "s3cret-token-for-the-attack"
HUGE = 200 * 1024 * 1024
CHUNK = b"x" * 65536


@pytest.fixture
def webhook(project):
    with BackgroundServer(make_app(project.root, TOKEN), name="webhook") as server:
        yield server


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def send_huge(url: str, *, token: str | None, chunked: bool, limit_s: float = 20.0) -> tuple[int, int, float]:
    """POST a 200 MB body as fast as the server takes it; (status, bytes sent, seconds) once an
    answer comes back. The body is one 64 KB piece sent again and again: the client holds no 200 MB."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=limit_s)
    head = [f"POST /tasks HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}")
    if token:
        head.append(f"Authorization: Bearer {token}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    answer = bytearray()
    done = threading.Event()

    def read() -> None:
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer.extend(data)
        except OSError:
            pass
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started, sent = time.monotonic(), 0
    piece = (b"%x\r\n" % len(CHUNK)) + CHUNK + b"\r\n" if chunked else CHUNK
    try:
        while sent < HUGE and not done.is_set() and time.monotonic() - started < limit_s:
            sock.sendall(piece)
            sent += len(CHUNK)
    except OSError:
        pass  # the server closed the connection after its answer: what we want
    done.wait(limit_s)
    elapsed = time.monotonic() - started
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent, elapsed


def test_huge_bodies_are_refused_without_being_read(project, webhook):
    before = peak_rss_mb()
    status, sent, seconds = send_huge(webhook.url, token=None, chunked=False)
    assert status == 401 and seconds < 10 and sent < HUGE      # refused before the body
    status, sent, seconds = send_huge(webhook.url, token=TOKEN, chunked=False)
    assert status == 413 and seconds < 10 and sent < HUGE      # Content-Length says it all
    status, sent, seconds = send_huge(webhook.url, token=TOKEN, chunked=True)
    assert status == 413 and seconds < 10 and sent < HUGE      # read up to max_body, no further
    assert peak_rss_mb() - before < 50                          # the 200 MB never sat in memory
    # The fleet goes on: the webhook still takes a task.
    added = httpx.post(webhook.url + "/tasks", json={"title": "after the attack"}, timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert added.status_code == 201 and [t.title for t in project.store.list_tasks()] == ["after the attack"]


def test_bad_input_is_400_never_500(project, webhook):
    client = httpx.Client(base_url=webhook.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    bad = [
        client.post("/tasks", content=b'{"title": "\\ud800 half a pair"}', headers={"content-type": "application/json"}),
        client.post("/command", content=b'{"text": "/add \\udfff"}', headers={"content-type": "application/json"}),
        client.post("/tasks", content=b'{"title": ', headers={"content-type": "application/json"}),
        client.post("/tasks", content=b"\xff\xfe not even text", headers={"content-type": "application/json"}),
        client.get("/tasks/99999999999999999999999999"),
        client.post("/tasks/99999999999999999999999999/approve"),
        client.post("/command", json={"text": "/approve 99999999999999999999999999"}),
        client.post("/command", json={"text": "/show 9223372036854775808"}),
        client.get("/tasks/not-a-number"),
    ]
    statuses = [answer.status_code for answer in bad]
    assert statuses == [400] * len(bad), [(a.request.url.path, a.status_code, a.text[:200]) for a in bad]
    assert all(answer.json()["ok"] is False and answer.json()["error"] for answer in bad)
    assert bad[0].json()["error"].startswith("title: ") and "not valid JSON" in bad[2].json()["error"]
    assert client.post("/tasks", json={"title": "fine"}).status_code == 201
    assert [t.title for t in project.store.list_tasks()] == ["fine"]
