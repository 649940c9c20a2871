"""The Telegram bot as `claw up` runs it, against telegram-test-api: an emulator of the Bot API from
npm (.ci/run installs it into .ci/node-telegram), not our own fake. The bot polls the emulator's
Bot API (`[telegram] base_url`); the test plays the person through the emulator's client API over
HTTP (`/sendCommand` to say something in a chat, `/getUpdates` to read what the bot sent there).

tests/telegram_test_api.js starts it and corrects two of its answers that are not the Bot API's
(getMe without `is_bot`, replies dated in milliseconds), which python-telegram-bot refuses.
What the emulator cannot do, and tests/test_channels.py still does with our fake: honour
getUpdates' `offset` (it forgets an update once it has handed it out, whatever the bot
confirmed), so that a restarted bot answers nothing twice is tested there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import agent_script, claw
from test_daemon import add_config, start_daemon
from test_recovery import wait_for
from test_run import configure, status_json

from clawfleet.llm.scripted import Script, ScriptedServer

pytestmark = [pytest.mark.slow, pytest.mark.real_cli]

PACKAGE = Path(os.environ.get("CLAW_TELEGRAM_TEST_API") or
               Path(__file__).resolve().parents[1] / ".ci/node-telegram/node_modules/telegram-test-api")
TOKEN = "4242:emulated-token"
OWNER, STRANGER = 42, 7


class Emulator:
    """telegram-test-api in its own node process, and the person's side of its client API."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(Path(__file__).with_name("telegram_test_api.js")), str(PACKAGE)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, f"telegram-test-api did not start (exit {self.proc.wait(10)})"
        self.url = json.loads(line)["url"]
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def say(self, chat_id: int, text: str) -> None:
        """A message from the person in `chat_id`, as a Telegram client sends a command."""
        command = text.split()[0]
        message = {"botToken": TOKEN, "date": int(time.time()), "text": text,
                   "from": {"id": chat_id, "is_bot": False, "first_name": "Owner"},
                   "chat": {"id": chat_id, "type": "private", "first_name": "Owner"},
                   "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}
        assert self.http.post("/sendCommand", json=message).json()["ok"]

    def replies(self, chat_id: int, count: int = 1, timeout: float = 30) -> list[str]:
        """The next `count` messages the bot sent to `chat_id` (each is read once)."""
        texts: list[str] = []

        def arrived() -> bool:
            texts.extend(update["message"]["text"] for update in self.unread(chat_id))
            return len(texts) >= count
        wait_for(arrived, timeout)
        assert len(texts) == count, texts
        return texts

    def reply(self, chat_id: int) -> str:
        return self.replies(chat_id)[0]

    def unread(self, chat_id: int) -> list[dict]:
        """What the bot sent to `chat_id` that no test has read yet."""
        return self.http.post("/getUpdates", json={"token": TOKEN, "chatId": chat_id}).json()["result"]

    def close(self) -> None:
        self.http.close()
        self.proc.stdin.close()  # it stops when its stdin closes
        self.proc.wait(10)


@pytest.fixture
def emulator():
    pytest.importorskip("telegram", reason="python-telegram-bot is not installed (pip install 'clawfleet[telegram]')")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the Telegram emulator (telegram-test-api) runs on it")
    if not (PACKAGE / "package.json").is_file():
        pytest.skip(f"telegram-test-api is not installed at {PACKAGE} "
                    "(bash .ci/run installs it, or set CLAW_TELEGRAM_TEST_API to its folder)")
    emulator = Emulator()
    try:
        yield emulator
    finally:
        emulator.close()


def shown(repo: Path) -> dict:
    return json.loads(claw(repo, "show", "1", "--json").stdout)


def daemon_with_telegram(repo: Path, emulator: Emulator, monkeypatch, chat_ids: list[int]):
    add_config(repo, f"""
[daemon]
tick = 0.1
[telegram]
enabled = true
chat_ids = {json.dumps(chat_ids)}
base_url = "{emulator.url}/bot"
""")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    return start_daemon(repo)


def test_claw_up_takes_telegram_commands_from_add_to_approved_and_landed(repo, emulator, monkeypatch):
    agent = agent_script(repo, "writer", 'echo "line for $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"writer": agent}, auto_approve="[]")
    emulator.say(OWNER, "/add Write file one\nOne line in it.")   # sent while the daemon is down
    model = ScriptedServer(Script.from_rules([{"steps": [{"text": "Task 1 waits for your review."}]}]))
    with model:
        add_config(repo, f"""
[agents.builtin]
kind = "builtin"
provider = "openai"
model = "scripted"
base_url = "{model.openai_base_url}"
""")
        daemon = daemon_with_telegram(repo, emulator, monkeypatch, [OWNER])
        try:
            assert emulator.reply(OWNER) == "queued task 1: Write file one"   # picked up once it polls
            wait_for(lambda: [t["state"] for t in status_json(repo)] == ["review"])
            assert status_json(repo)[0]["body"] == "One line in it."

            emulator.say(OWNER, "/status")
            assert "1 [review] Write file one" in emulator.reply(OWNER)
            emulator.say(OWNER, "/ask What waits for me?")
            assert emulator.reply(OWNER) == "Task 1 waits for your review."
            emulator.say(OWNER, "/show 1")
            details = emulator.reply(OWNER)
            assert "file-1.txt" in details and "1 file(s), +1 -0" in details
            emulator.say(OWNER, "/reject 1 say more\nin two lines")
            assert emulator.reply(OWNER) == "task 1 sent back: a new attempt gets your feedback"
            wait_for(lambda: (task := shown(repo))["state"] == "review" and len(task["attempts"]) == 2, 60)
            assert shown(repo)["feedback"] == "say more\nin two lines"
            emulator.say(OWNER, "/approve 99")                            # a clear error, and it goes on
            assert emulator.reply(OWNER).startswith("error: ")
            emulator.say(OWNER, "/approve 1")
            assert emulator.reply(OWNER).startswith("task 1 approved")
            wait_for(lambda: [t["state"] for t in status_json(repo)] == ["merged"])   # the daemon lands it
        finally:
            stopped = claw(repo, "down")
        assert stopped.returncode == 0, stopped.stderr
        assert daemon.wait(15) == 0
        assert model.requests[0]["body"]["messages"][-1] == {"role": "user", "content": "What waits for me?"}
    log = daemon.stdout.read()
    assert f"telegram bot polling {emulator.url}" in log
    assert (repo / "file-1.txt").read_text() == "line for 1\n"
    events = shown(repo)["events"]
    assert [e["data"]["by"] for e in events if e["kind"] == "attempt.approved"] == ["telegram"]
    added = [e for e in events if e["kind"] == "task.added"]
    assert added[0]["data"]["source"] == "telegram"


def test_claw_up_refuses_a_chat_not_allowed_and_does_nothing_for_it(repo, emulator, monkeypatch):
    configure(repo, {"writer": agent_script(repo, "writer", "true\n")}, auto_approve="[]")
    daemon = daemon_with_telegram(repo, emulator, monkeypatch, [OWNER])
    try:
        emulator.say(STRANGER, "/add Delete everything")
        refused = emulator.reply(STRANGER)
        emulator.say(OWNER, "/status")                                 # the owner's chat still works
        owner = emulator.reply(OWNER)
    finally:
        claw(repo, "down")
        daemon.wait(15)
    assert refused.startswith(f"This chat ({STRANGER}) may not command this fleet")
    assert f"add {STRANGER} to chat_ids under [telegram]" in refused
    assert "Delete everything" not in owner
    assert status_json(repo) == []                                     # nothing was queued for it
    assert emulator.unread(OWNER) == emulator.unread(STRANGER) == []   # one answer each, no more
