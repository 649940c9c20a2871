"""Gateway keys die with their attempt, and the gateway's secret is private to its user.

The attack of 2026-12-01: an attempt's key, kept by its agent (or read from a log), still got
answers after the attempt had ended. Now the gateway refuses it with 401 and says why; the AI
reviewer, which uses the attempt's key while it reviews, still gets through; a live attempt of
the same fleet goes on.
"""

from __future__ import annotations

import stat

import httpx
import pytest

from clawfleet.llm.gateway import GatewayServer
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.models import AttemptState, TaskState
from clawfleet.project import Project

SCRIPT = Script.from_rules([{"match": "hello", "steps": [{"text": "hi"}]}])


@pytest.fixture
def fleet(project: Project, monkeypatch):
    monkeypatch.setenv("CLAW_TEST_UPSTREAM_KEY", "sk-upstream-0123456789abcdefghij")
    with ScriptedServer(SCRIPT) as upstream:
        with open(project.config_path, "a") as handle:
            handle.write(f'\n[gateway.upstreams.scripted]\nbase_url = "{upstream.openai_base_url}"\n'
                         'apis = ["chat"]\nkey_env = "CLAW_TEST_UPSTREAM_KEY"\n')
        with GatewayServer(project.root) as gateway:
            yield project, gateway


def start(project: Project, title: str):
    task = project.store.add_task(title)
    return project.store.start_attempt(task.id, agent="builtin", branch_for=lambda n: f"claw/{task.id}-{n}",
                                       base_commit="0" * 40)


def ask(gateway: GatewayServer, attempt_id: int) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {gateway.attempt_key(attempt_id)}"},
                      json={"model": "scripted", "messages": [{"role": "user", "content": "hello"}]})


def test_a_finished_attempts_key_is_refused_and_the_fleet_goes_on(fleet):
    project, gateway = fleet
    done, live = start(project, "finished soon"), start(project, "still running")
    assert ask(gateway, done.id).status_code == 200
    project.store.finish_attempt(done.id, AttemptState.failed, "attempt.failed", task_state=TaskState.failed)
    refused = ask(gateway, done.id)
    assert refused.status_code == 401
    assert f"the key of attempt {done.id} no longer works: it ended (failed)" in refused.json()["error"]["message"]
    assert ask(gateway, done.id).status_code == 401            # and stays refused
    assert ask(gateway, live.id).status_code == 200            # the running one goes on
    # The base-URL form of the key (/a/TOKEN) is the same key.
    url_form = httpx.post(gateway.attempt_url(done.id) + "/v1/chat/completions", timeout=10,
                          json={"model": "scripted", "messages": [{"role": "user", "content": "hello"}]})
    assert url_form.status_code == 401


def test_the_ai_reviewer_still_uses_an_ended_attempts_key_while_it_reviews(fleet):
    project, gateway = fleet
    attempt = start(project, "under review")
    project.store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready", task_state=TaskState.review,
                                 ai_review="running")
    assert ask(gateway, attempt.id).status_code == 200
    project.store.update_attempt(attempt.id, ai_review="approve")
    assert ask(gateway, attempt.id).status_code == 401


def test_gateway_secret_is_private(fleet):
    project, _ = fleet
    path = project.run_dir / "gateway.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.run_dir.stat().st_mode) == 0o700
