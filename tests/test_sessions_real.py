"""The real agent CLIs continue their own sessions: a fix round resumes the session of the first
try with the failing checks as the next turn (`claude --resume ID`, `codex exec resume ID`,
`gemini --resume ID`), and a send-back's attempt resumes it again, from a copy of the session in
its own HOME, in a new workspace at the earlier attempt's work, with the feedback as the next
turn. Offline, against the scripted model, which answers step N at the conversation's N-th model
turn: a step past the first try's is reached only when the earlier turns are in the request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.store import Store

from conftest import claw
from test_agents_real import CHECK, MULTIPLY_TEST, calculator_repo, configure, require, shell_tool
from test_run import status_json

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]

SESSION_EVENT = {"claude": ("system", "session_id"), "codex": ("thread.started", "thread_id"),
                 "gemini": ("init", "session_id")}


def one_conversation(kind: str) -> Script:
    """The first try (4 turns), the fix round (3) and the send-back (2), as one conversation."""
    return Script.from_rules([{"name": "multiply", "match": "Add multiply", "steps": [
        shell_tool(kind, "cat calc.py"),
        shell_tool(kind, "printf '\\n\\ndef multiply(a, b):\\n    return a + b  # multiply\\n' >> calc.py"),
        shell_tool(kind, MULTIPLY_TEST),
        {"text": "Added multiply(a, b) and its test."},
        shell_tool(kind, CHECK + " 2>&1 | tail -n 5"),
        shell_tool(kind, "sed -i 's/return a + b  # multiply/return a * b/' calc.py && " + CHECK),
        {"text": "Fixed multiply: it multiplies now; the tests pass."},
        shell_tool(kind, "printf '\\n\\ndef square(a):\\n    return multiply(a, a)\\n' >> calc.py"),
        {"text": "Added square(a), as the reviewer asked."},
    ]}])


def sessions_in(attempt_dir: Path, kind: str, round_number: int) -> list[str]:
    event_type, key = SESSION_EVENT[kind]
    events = [json.loads(line) for line in (attempt_dir / f"{kind}-{round_number}.jsonl").read_text().splitlines()
              if line.startswith("{")]
    return [e[key] for e in events if e.get("type") == event_type and key in e]


def text_of(request: dict) -> str:
    body = request["body"]
    return json.dumps(body.get("messages") or body.get("input") or body.get("contents"))


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_fix_round_and_send_back_resume_the_clis_own_session(repo, kind):
    require(kind)
    calculator_repo(repo)
    with ScriptedServer(one_conversation(kind)) as server:
        configure(repo, kind, server)
        config = repo / ".claw" / "config.toml"
        config.write_text(config.read_text().replace("max_attempts = 1", "max_attempts = 3"))
        assert claw(repo, "add", "Add multiply(a, b) to calc.py, with a test").returncode == 0
        assert claw(repo, "run", timeout=600).returncode == 0
        first = status_json(repo)[0]
        one = first["latest_attempt"]
        assert first["state"] == "review", (first["reason"], claw(repo, "log", "1").stdout[-3000:])
        assert one["fix_rounds"] == 1 and one["checks_passed"] is True
        assert one["summary"] == "Fixed multiply: it multiplies now; the tests pass."
        after_first = len(server.requests)

        assert claw(repo, "reject", "1", "--feedback", "Please add square(a) too.").returncode == 0
        result = claw(repo, "run", timeout=600)
        assert result.returncode == 0, result.stderr
        requests = list(server.requests)
    second = status_json(repo)[0]
    two = second["latest_attempt"]
    assert second["state"] == "review", (second["reason"], claw(repo, "log", "1").stdout[-3000:])
    assert two["number"] == 2 and two["summary"] == "Added square(a), as the reviewer asked."

    # One session all along: the CLI's own id is the same in the first try, the fix round and
    # the send-back, and it is what the store recorded.
    dir_one = repo / ".claw" / "run" / "attempts" / str(one["id"])
    dir_two = repo / ".claw" / "run" / "attempts" / str(two["id"])
    ids = sessions_in(dir_one, kind, 0) + sessions_in(dir_one, kind, 1) + sessions_in(dir_two, kind, 0)
    assert len(ids) == 3 and len(set(ids)) == 1, ids
    assert one["session"] == two["session"] == ids[0]
    assert f"continues attempt 1's work, in its session {ids[0]}" in result.stdout

    # The model saw the earlier turns: the fix round's first request carries the first try's
    # reply and the failing checks; the send-back's carries the fix round's reply and the feedback.
    fix_request = text_of(requests[4])
    assert "Added multiply(a, b) and its test." in fix_request and "The checks failed (fix round 1)" in fix_request
    assert "FAILED" in fix_request or "AssertionError" in fix_request
    sent_back = text_of(requests[after_first])
    assert "Fixed multiply: it multiplies now" in sent_back and "Please add square(a) too." in sent_back
    assert len(requests) == 9
    # The next turns were the new part only, not the whole prompt again.
    assert "# Your task" not in (dir_one / "prompt-1.md").read_text()
    assert (dir_two / "prompt-0.md").read_text().startswith("# Your work was sent back for changes")

    # The send-back's workspace started at the earlier work: its branch has all of it.
    calc = git.out("show", f"{two['branch']}:calc.py", cwd=repo)
    assert "return a * b" in calc and "def square(a)" in calc
    assert git.is_ancestor(repo, one["head_commit"], two["head_commit"])
    # Each attempt has its own HOME; the session was copied into the second one's.
    home = {"claude": "claude-home", "codex": "codex-home", "gemini": "gemini-home"}[kind]
    assert (dir_one / home).is_dir() and (dir_two / home).is_dir()
    assert any(ids[0][:8] in p.name for p in (dir_two / home).rglob("*") if p.is_file())
    if kind == "codex":   # its token counts are the thread's totals: only this run's are added
        assert 0 < two["input_tokens"] < one["input_tokens"]
    calls = Store(repo / ".claw" / "run" / "claw.db").events(task_id=1, kinds=["attempt.continued"])
    assert calls and calls[0]["data"]["session"] == ids[0]
