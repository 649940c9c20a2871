"""Talking to the claw: the shared commands, the webhook over real HTTP with its token, and the
one thing of the Telegram bot that needs our own fake Bot API (python-telegram-bot pointed at it
by base_url); the rest of the bot is tested against an emulator in tests/test_telegram_emulator.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from conftest import agent_script, claw, write_config
from fastapi import FastAPI, Request
from test_recovery import wait_for
from test_run import configure, status_json

from clawfleet.channels import commands
from clawfleet.channels.webhook import make_app, webhook_token
from clawfleet.errors import NotFound, UsageError
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.llm.serve import BackgroundServer
from clawfleet.project import Project

TOKEN = "s3cret-token"


def tasks_in_review(repo: Path, titles: list[str]) -> list[int]:
    """Run a real agent on each title with no auto-approval: each ends waiting for review."""
    agent = agent_script(repo, "writer", 'echo "line for $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"writer": agent}, auto_approve="[]")
    ids = [int(claw(repo, "add", title).stdout) for title in titles]
    result = claw(repo, "run", "--no-merge")
    assert result.returncode == 0, result.stderr
    assert all(t["state"] == "review" for t in status_json(repo))
    return ids


@pytest.fixture
def webhook(repo):
    """The webhook app on a real port; yields a client that sends the token."""
    with BackgroundServer(make_app(repo, TOKEN), name="webhook") as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30) as client:
            yield client


def test_webhook_refuses_a_missing_or_wrong_token(repo, project, webhook):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN + "x"}):
        answer = httpx.get(str(webhook.base_url) + "/status", headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "missing or wrong token"
    refused = httpx.post(str(webhook.base_url) + "/tasks", json={"title": "sneaky"}, timeout=10)
    assert refused.status_code == 401
    assert project.store.list_tasks() == []     # nothing was done for it


def test_webhook_add_status_show_approve_reject_end_to_end(repo, project, webhook):
    first, second, third = tasks_in_review(repo, ["Write file one", "Write file two", "Write file three"])

    created = webhook.post("/tasks", json={"title": "From the webhook", "body": "details", "importance": "high"})
    assert created.status_code == 201 and created.json()["text"] == f"queued task {created.json()['id']}: From the webhook"
    new = project.store.get_task(created.json()["id"])
    assert (new.body, new.importance, new.state) == ("details", "high", "queued")
    added = [e for e in project.store.events(task_id=new.id) if e["kind"] == "task.added"]
    assert added[0]["data"]["source"] == "webhook"

    status = webhook.get("/status").json()
    assert status["counts"] == {"queued": 1, "review": 3}
    assert f"{first} [review] Write file one" in status["text"]

    shown = webhook.get(f"/tasks/{first}").json()
    assert shown["files"] == [{"path": f"file-{first}.txt", "added": 1, "deleted": 0}]
    assert shown["attempt"]["state"] == "ready" and "1 file(s), +1 -0" in shown["text"]

    assert webhook.post(f"/tasks/{first}/approve").json()["text"].startswith(f"task {first} approved")
    assert project.store.get_task(first).reason == "approved by webhook"
    sent_back = webhook.post(f"/tasks/{second}/reject", json={"feedback": "name it file-two.txt"}).json()
    assert sent_back["sent_back"] is True
    assert project.store.get_task(second).state == "queued"
    assert project.store.get_task(second).feedback == "name it file-two.txt"
    assert webhook.post(f"/tasks/{third}/reject").json()["sent_back"] is False
    assert project.store.get_task(third).state == "rejected"

    again = webhook.post(f"/tasks/{first}/approve")
    assert again.status_code == 409 and "not waiting for review" in again.json()["error"]
    missing = webhook.get("/tasks/999")
    assert missing.status_code == 404 and missing.json()["hint"]
    bad = webhook.post("/tasks", json={"title": "x", "importance": "urgent"})
    assert bad.status_code == 400 and "importance must be one of" in bad.json()["error"]
    assert webhook.post("/tasks", json={}).status_code == 400   # bad input is 400, with what is wrong


def test_webhook_chat_form_runs_the_same_commands(repo, project, webhook):
    [task_id] = tasks_in_review(repo, ["Write a file"])
    reply = webhook.post("/command", json={"text": "/add Fix the login page\nIt fails on empty passwords."}).json()
    added = project.store.get_task(reply["id"])
    assert (added.title, added.body) == ("Fix the login page", "It fails on empty passwords.")
    assert webhook.post("/command", json={"text": f"/show {task_id}"}).json()["files"][0]["added"] == 1
    reply = webhook.post("/command", json={"text": f"/reject {task_id} use a better name\nand a test"}).json()
    assert project.store.get_task(task_id).feedback == "use a better name\nand a test" and reply["sent_back"]
    unknown = webhook.post("/command", json={"text": "/deploy now"})
    assert unknown.status_code == 400 and "unknown command '/deploy'" in unknown.json()["error"]
    assert "/approve TASK" in webhook.post("/command", json={"text": "/help"}).json()["text"]


def test_ask_answers_with_the_soul_user_and_agents_files(repo, project, webhook):
    (repo / "USER.md").write_text("The owner is Ada. She prefers short answers.\n")
    project.store.add_task("Add a CHANGELOG")
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "One task is queued: Add a CHANGELOG."}]}])) as server:
        write_config(repo, f"""
            [agents.builtin]
            kind = "builtin"
            provider = "openai"
            model = "scripted"
            base_url = "{server.openai_base_url}"
            """)
        answer = webhook.post("/ask", json={"question": "What is queued?"})
        messages = server.requests[0]["body"]["messages"]
    assert answer.status_code == 200 and answer.json()["answer"] == "One task is queued: Add a CHANGELOG."
    system = messages[0]["content"]
    assert "## SOUL.md" in system and "The owner is Ada" in system and "## AGENTS.md" in system
    assert "1 [queued] Add a CHANGELOG" in system
    assert messages[1] == {"role": "user", "content": "What is queued?"}


def test_ask_without_a_model_is_a_clear_error(repo, project, webhook, monkeypatch):
    for name in ("CLAW_MODEL", "OPENAI_MODEL", "ANTHROPIC_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    answer = webhook.post("/ask", json={"question": "anything?"})
    assert answer.status_code == 400 and "no model configured" in answer.json()["error"]


def test_shared_commands_read_chat_text(project):
    reply = commands.run_text(project, "/add@claw_bot Tidy the README", source="telegram")
    assert project.store.get_task(reply.data["id"]).title == "Tidy the README"
    assert commands.run_text(project, "/status").data["counts"] == {"queued": 1}
    with pytest.raises(UsageError, match="needs a task id"):
        commands.run_text(project, "/approve soon")
    with pytest.raises(UsageError, match="a task needs a title"):
        commands.run_text(project, "/add")
    with pytest.raises(NotFound):
        commands.run_text(project, "/show 42")
    assert commands.run_text(project, "").text == commands.HELP


def test_webhook_token_is_made_once_and_private_unless_given(project, monkeypatch):
    monkeypatch.delenv("CLAW_WEBHOOK_TOKEN", raising=False)
    token = webhook_token(project)
    path = project.run_dir / "webhook.token"
    assert len(token) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert webhook_token(project) == token
    monkeypatch.setenv("CLAW_WEBHOOK_TOKEN", "from-env")
    assert webhook_token(project) == "from-env"


# -- Telegram, against our fake of the Bot API, where the emulator cannot stand in ----------------

class FakeBotApi:
    """Just enough of the Telegram Bot API for python-telegram-bot to poll and reply."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.confirmed = 0  # as the Bot API: an offset confirms, for good, every update below it
        self.app = FastAPI()
        self.app.post("/bot{token}/{method}")(self.handle)

    def say(self, chat_id: int, text: str) -> None:
        command = text.split()[0]
        self.updates.append({"update_id": len(self.updates) + 1, "message": {
            "message_id": len(self.updates) + 1, "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Owner"},
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}})

    async def handle(self, token: str, method: str, request: Request):
        if token != self.token:
            return {"ok": False, "error_code": 401, "description": "Unauthorized"}
        params = {}
        for key, values in parse_qs((await request.body()).decode()).items():
            try:
                params[key] = json.loads(values[0])
            except ValueError:
                params[key] = values[0]
        if method == "getMe":
            return {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "claw", "username": "claw_bot"}}
        if method in ("deleteWebhook", "setMyCommands"):
            return {"ok": True, "result": True}
        if method == "getUpdates":
            self.confirmed = max(self.confirmed, int(params.get("offset") or 0))
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
            while True:
                fresh = [u for u in self.updates if u["update_id"] >= self.confirmed]
                if fresh or time.monotonic() >= deadline:
                    return {"ok": True, "result": fresh}
                await asyncio.sleep(0.05)
        if method == "sendMessage":
            self.sent.append(params)
            return {"ok": True, "result": {"message_id": 100 + len(self.sent), "date": int(time.time()),
                                           "chat": {"id": int(params["chat_id"]), "type": "private"},
                                           "text": params["text"]}}
        return {"ok": False, "error_code": 404, "description": f"Not Found: {method}"}


def test_a_restarted_telegram_bot_answers_nothing_twice(repo, project, monkeypatch):
    """Our fake, not the emulator: telegram-test-api forgets an update once it has handed it out,
    whatever offset the bot sends, so only a fake that keeps `offset` as the Bot API does (an
    update below it is gone for good) shows that the bot confirms what it answered, and a restarted
    one is not handed it again. The commands, their replies and
    the allow-list are tested against the emulator, in tests/test_telegram_emulator.py."""
    from clawfleet.channels.telegram import TelegramBot

    fake = FakeBotApi("123:ABC")
    with BackgroundServer(fake.app, name="fake bot api") as api:
        write_config(repo, f"""
            [telegram]
            enabled = true
            chat_ids = [42]
            base_url = "{api.url}/bot"
            """)
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:ABC")
        for text in ("/add Tidy the README", "/status"):   # a `claw up`, a `claw down`, a `claw up`
            bot = TelegramBot.from_config(Project(repo))
            bot.poll_interval = 0.05
            bot.start()
            try:
                fake.say(42, text)
                wait_for(lambda: len(fake.sent) >= len(fake.updates))
                time.sleep(0.5)                          # room for a second answer, were one coming
            finally:
                bot.stop()
    assert len(fake.sent) == 2, [m["text"] for m in fake.sent]   # the /add was not answered again
    added, status = fake.sent
    assert (added["chat_id"], added["text"]) == (42, "queued task 1: Tidy the README")
    assert "1 [queued] Tidy the README" in status["text"]
    assert [t.title for t in project.store.list_tasks()] == ["Tidy the README"]


def test_telegram_without_a_token_is_a_clear_error(repo, monkeypatch):
    from clawfleet.channels.telegram import TelegramBot
    from clawfleet.errors import ClawError

    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    write_config(repo, "[telegram]\nenabled = true\n")
    with pytest.raises(ClawError, match=r"\$TELEGRAM_BOT_TOKEN is not set"):
        TelegramBot.from_config(Project(repo))
