"""`kind = "acp"` driven by `claw run`, against a real ACP agent process of the tests' own
(tests/acp_agent.py, the SDK's agent side): session, prompt, permission answers, file service,
the log and transcript, usage, the session resumed by a fix round, the deadline, a crash."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from clawfleet import git

from conftest import claw, write_config
from test_run import status_json

AGENT = str(Path(__file__).resolve().parent / "acp_agent.py")


def configure(repo: Path, plans: list[list[dict]], *, checks: list[str] = (), timeout: float = 60,
              fix_rounds: int = 1, sandboxed: bool = True, stall_timeout: float = 300) -> None:
    write_config(repo, f"""
        [fleet]
        default_agent = "acp"
        stall_timeout = {stall_timeout}
        attempt_timeout = {timeout}
        max_attempts = 1
        [checks]
        commands = {json.dumps(list(checks))}
        fix_rounds = {fix_rounds}
        [review]
        auto_approve = []
        [agents.acp]
        kind = "acp"
        command = ["{sys.executable}", "{AGENT}"]
        env = {{ ACP_TEST_ACTIONS = {json.dumps(json.dumps(plans))} }}   # its plan: no file of ours in its sight
        [sandbox]
        enabled = {json.dumps(sandboxed)}   # contained, as by default
        """)


def attempt_dir(repo: Path, attempt: dict) -> Path:
    return repo / ".claw" / "run" / "attempts" / str(attempt["id"])


def results(repo: Path, attempt: dict) -> list[dict]:
    path = attempt_dir(repo, attempt) / "acp-home" / "acp-test-results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_acp_agent_edits_the_worktree_through_clawfleet_and_its_session_shows_in_log_and_transcript(repo):
    configure(repo, [[
        {"plan": ["read app.txt", "write notes/new.txt"]},
        {"read": "app.txt"},
        {"ask": {"kind": "edit", "title": "Write notes/new.txt", "locations": ["notes/new.txt"]}},
        {"write": str(repo / "never.txt"), "content": "x"},   # the person's checkout, not the worktree
        {"write": "notes/new.txt", "content": "made by the agent\n"},
        {"tool": {"title": "ls -la", "kind": "execute", "output": "total 8"}},
        {"say": "Wrote notes/new.txt "}, {"say": "as asked."},
        {"usage": [1200, 34]},
    ]])
    assert claw(repo, "add", "Write a note").returncode == 0
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review", (task["reason"], claw(repo, "log", "1").stdout[-2000:])
    assert attempt["summary"] == "Wrote notes/new.txt as asked."
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (1200, 34)
    branch = attempt["branch"]
    assert git.out("show", f"{branch}:notes/new.txt", cwd=repo) == "made by the agent"
    assert not (repo / "never.txt").exists() and not (repo / "notes").exists()

    got = results(repo, attempt)
    hello = got[0]
    assert hello["client"] == "clawfleet" and hello["terminal"] is False
    assert hello["fs"] == {"read_text_file": True, "write_text_file": True, "field_meta": None}
    assert "/.claw/run/worktrees/" in got[1]["action"]["new_session"]   # the session's cwd: the worktree
    by_kind = {next(iter(r["action"])): r for r in got[2:]}
    assert by_kind["read"]["ok"] and by_kind["read"]["content"] == "one\n"
    assert by_kind["ask"]["outcome"] == {"outcome": "selected", "option_id": "yes", "field_meta": None}
    writes = [r for r in got if "write" in r["action"]]
    assert [w["ok"] for w in writes] == [False, True]
    assert "outside the worktree" in writes[0]["data"]["reason"]

    log = claw(repo, "log", "1").stdout
    for line in ("# ACP agent 'acp':", "[acp test-agent 1.0, session ", "plan: [x] read app.txt; [ ] write notes/new.txt",
                 "?  [edit] Write notes/new.txt: allowed (inside the worktree)",
                 "!  write refused:", "wrote notes/new.txt (18 bytes)", "-> [execute] ls -la",
                 "<- [completed] ls -la: total 8", "agent: Wrote notes/new.txt as asked.",
                 "[end: end_turn, 1200 in / 34 out tokens]"):
        assert line in log, (line, log)

    messages = [json.loads(line) for line in (attempt_dir(repo, attempt) / "acp-0.jsonl").read_text().splitlines()]
    methods = [m["message"].get("method") for m in messages if m["from"] == "clawfleet"]
    assert methods[:3] == ["initialize", "session/new", "session/prompt"]
    asked = {m["message"].get("method") for m in messages if m["from"] == "agent"}
    assert {"session/update", "fs/read_text_file", "fs/write_text_file", "session/request_permission"} <= asked
    assert all(isinstance(m["at"], float) for m in messages)


def test_permission_requests_are_answered_by_the_rule(repo):
    outside = str(repo.parent / "elsewhere.txt")
    configure(repo, [[
        {"ask": {"kind": "edit", "title": "edit outside", "locations": [outside]}},
        {"ask": {"kind": "delete", "title": "delete via ..", "locations": ["../x"]}},
        {"ask": {"kind": "edit", "title": "rewrite .git", "locations": [".git"]}},
        {"ask": {"kind": "read", "title": "read inside", "locations": ["app.txt"]}},
        {"ask": {"kind": "execute", "title": "run the tests"}},
        {"ask": {"kind": "fetch", "title": "fetch a web page"}},
        {"ask": {"kind": "switch_mode", "title": "yolo"}},
        {"ask": {"title": "a tool of no kind"}},
        {"write": "done.txt", "content": "ok\n"},
    ]])
    claw(repo, "add", "Ask for things")
    assert claw(repo, "run").returncode == 0
    attempt = status_json(repo)[0]["latest_attempt"]
    answers = [r["outcome"]["option_id"] for r in results(repo, attempt) if "ask" in r["action"]]
    assert answers == ["no", "no", "no", "yes", "yes", "no", "no", "no"]
    log = claw(repo, "log", "1").stdout
    assert f"edit outside: refused ({outside} is outside the worktree or in .git)" in log
    assert "fetch a web page: refused (fetch tool: only file work in the worktree and commands are allowed)" in log
    assert attempt["state"] == "ready"


def test_a_fix_round_loads_the_session_of_the_first_round(repo):
    configure(repo, [
        [{"write": "value.txt", "content": "1\n"}, {"say": "wrote 1"}],
        [{"write": "value.txt", "content": "2\n"}, {"say": "fixed: wrote 2"}],
    ], checks=["grep -qx 2 value.txt"])
    claw(repo, "add", "Make value.txt hold 2")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review" and attempt["fix_rounds"] == 1, task["reason"]
    assert attempt["summary"] == "fixed: wrote 2"
    got = results(repo, attempt)
    created = [r["session_id"] for r in got if "new_session" in r["action"]]
    loaded = [r["action"]["load_session"] for r in got if "load_session" in r["action"]]
    assert len(created) == 1 and loaded == created
    log = claw(repo, "log", "1").stdout
    assert f"session {created[0]} (new)" in log
    assert f"session {created[0]} (loaded, 1 updates replayed)" in log
    transcript = (attempt_dir(repo, attempt) / "acp-1.jsonl").read_text()
    assert "session/load" in transcript and "session/new" not in transcript


@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "sandboxed"])
def test_an_acp_agent_past_its_deadline_is_killed_and_its_work_kept(repo, sandboxed):
    marker = f"sleeping in {repo}"   # in the agent's environment, which no other process has
    configure(repo, [[{"write": "partial.txt", "content": "half\n"}, {"say": marker}, {"sleep": 300}]],
              timeout=30, sandboxed=sandboxed)
    claw(repo, "add", "Take forever")
    assert claw(repo, "run", timeout=90).returncode == 0
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert attempt["state"] == "timed_out" and task["reason"] == "the agent ran out of time", task
    assert git.out("show", f"{attempt['branch']}:partial.txt", cwd=repo) == "half"
    assert "[out of time: the agent's process group is stopped]" in claw(repo, "log", "1").stdout
    assert (attempt_dir(repo, attempt) / "children").read_text().strip() == ""
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and marker in _environ(int(pid))]
    assert not left, f"the ACP agent outlived its deadline: {left}"


def test_a_silent_acp_agent_is_ended_by_the_stall_guard_not_the_attempt_timeout(repo):
    configure(repo, [[{"say": "thinking hard"}, {"tool": {"title": "look around", "kind": "read"}},
                      {"sleep": 300}]], timeout=120, stall_timeout=4)
    claw(repo, "add", "Go quiet")
    started = time.monotonic()
    assert claw(repo, "run", timeout=110).returncode == 0
    task = status_json(repo)[0]
    assert task["latest_attempt"]["state"] == "stalled", task
    assert task["reason"].startswith("stalled: no new output, event, file change or CPU use for 4 s"), task["reason"]
    assert "look around" in task["reason"]          # the last thing it printed
    assert time.monotonic() - started < 100


def test_an_acp_agent_that_dies_mid_turn_fails_with_its_last_words(repo):
    configure(repo, [[{"say": "about to crash"}, {"exit": 3}]])
    claw(repo, "add", "Crash")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert task["reason"].startswith("the ACP agent exited (status 3) before its turn ended"), task["reason"]


def test_a_turn_that_ends_other_than_end_turn_is_an_error(repo):
    configure(repo, [[{"write": "x.txt", "content": "x\n"}, {"stop": "refusal"}]])
    claw(repo, "add", "Refuse")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "failed" and task["reason"] == "the ACP agent stopped: refusal", task


def test_a_missing_acp_program_fails_with_how_to_install_it(repo):
    write_config(repo, """
        [fleet]
        default_agent = "g"
        [agents.g]
        kind = "acp"
        command = ["gemini", "--acp"]
        """)
    claw(repo, "add", "anything")
    empty = repo.parent / "empty-bin"
    empty.mkdir()
    env = {"PATH": f"{empty}:/usr/bin:/bin", "CLAW_AGENT_BIN_DIR": str(empty)}
    result = claw(repo, "run", env=env)   # refused before anything starts
    assert result.returncode == 1 and status_json(repo)[0]["state"] == "queued"
    reason = " ".join(result.stderr.split())
    assert "agent 'g' (kind acp): program 'gemini' not found" in reason
    assert "npm install -g @google/gemini-cli" in reason


def test_an_acp_agent_with_a_base_url_and_no_provider_is_refused_with_the_fix(repo):
    write_config(repo, """
        [agents.mine]
        kind = "acp"
        command = ["my-acp-agent"]
        base_url = "http://127.0.0.1:9/v1"
        """)
    result = claw(repo, "add", "anything")
    assert result.returncode != 0
    assert "set `provider` (gemini, anthropic or openai)" in result.stderr + result.stdout


def _environ(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    except OSError:
        return ""
