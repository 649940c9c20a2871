"""Fix rounds and send-backs continue the agent's own session (here the built-in agent's, whose
session is its trajectory; tests/test_sessions_real.py does the same with the real CLIs).

A fix round sends only the next turn (the failing checks) into the conversation so far. A
send-back's attempt starts in a workspace at the earlier attempt's work, rebased onto the
target's tip, and goes on with the same conversation with the feedback as the next turn; when
that work no longer rebases cleanly, it starts fresh from the tip with the earlier diff and the
feedback in its prompt, and says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.agents import copy_session_files, session_files
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.store import Store

from conftest import agent_script, claw, write_config
from test_run import status_json


def configure_builtin(repo: Path, server: ScriptedServer, checks: list[str]) -> None:
    write_config(repo, f"""
        [fleet]
        attempt_timeout = 120
        max_attempts = 3
        [checks]
        commands = {json.dumps(checks)}
        fix_rounds = 1
        [review]
        auto_approve = []
        [agents.builtin]
        kind = "builtin"
        provider = "openai"
        model = "scripted"
        base_url = "{server.openai_base_url}"
        """)


def attempt_dir(repo: Path, attempt_id: int) -> Path:
    return repo / ".claw" / "run" / "attempts" / str(attempt_id)


def transcript_of(request: dict) -> str:
    return json.dumps(request["body"]["messages"])


@pytest.mark.slow
def test_builtin_fix_round_and_send_back_continue_its_conversation(repo):
    # One conversation from the first prompt to the send-back's end: the scripted model answers
    # step N at its N-th model turn, so every step after the first two is reached only when the
    # earlier turns are in the conversation.
    script = Script.from_rules([{"match": "Write greeting", "steps": [
        {"command": "echo hello > greeting.txt"},
        {"done": "wrote greeting.txt"},
        {"command": "echo 'hello, world' > greeting.txt"},            # fix round: the check wants a comma
        {"done": "greeting has a comma now"},
        {"command": "echo 'Hello, world!' > greeting.txt && echo more > more.txt"},   # the send-back
        {"done": "capitalised, and more.txt"},
    ]}])
    with ScriptedServer(script) as server:
        configure_builtin(repo, server, ["grep -q , greeting.txt"])
        claw(repo, "add", "Write greeting.txt")
        assert claw(repo, "run", timeout=200).returncode == 0
        first = status_json(repo)[0]
        assert first["state"] == "review", first
        one = first["latest_attempt"]
        assert one["fix_rounds"] == 1 and one["summary"] == "greeting has a comma now"

        # The fix round's prompt was the next turn only, sent into round 0's conversation.
        fix_prompt = (attempt_dir(repo, one["id"]) / "prompt-1.md").read_text()
        assert fix_prompt.startswith("# The checks failed (fix round 1)") and "# Your task" not in fix_prompt
        fix_request = transcript_of(server.requests[2])
        assert "wrote greeting.txt" in fix_request and "The checks failed (fix round 1)" in fix_request
        assert one["session"] == "trajectory-1.json"
        trajectory = json.loads((attempt_dir(repo, one["id"]) / "trajectory-1.json").read_text())
        assert [m["role"] for m in trajectory].count("assistant") == 4

        assert claw(repo, "reject", "1", "--feedback", "Capitalise it and add more.txt").returncode == 0
        assert claw(repo, "run", timeout=200).returncode == 0
        requests = list(server.requests)
    second = status_json(repo)[0]
    two = second["latest_attempt"]
    assert second["state"] == "review", (second, claw(repo, "log", "1").stdout[-2000:])
    assert two["number"] == 2 and two["summary"] == "capitalised, and more.txt"

    # The send-back went on with the same conversation, the feedback as its next turn...
    sent_back = transcript_of(requests[4])
    assert "greeting has a comma now" in sent_back and "Capitalise it and add more.txt" in sent_back
    assert "# Your work was sent back for changes" in (attempt_dir(repo, two["id"]) / "prompt-0.md").read_text()
    assert two["session"] == "trajectory-0.json"
    assert (attempt_dir(repo, two["id"]) / "earlier-trajectory-1.json").is_file()   # a copy, not shared
    # ... in a workspace at the earlier attempt's work: its branch holds both attempts' commits.
    branch = two["branch"]
    assert git.is_ancestor(repo, one["head_commit"], two["head_commit"])
    assert git.out("show", f"{branch}:greeting.txt", cwd=repo) == "Hello, world!"
    assert git.out("show", f"{branch}:more.txt", cwd=repo) == "more"
    assert git.changed_files(repo, "main", branch) == ["greeting.txt", "more.txt"]
    events = Store(repo / ".claw" / "run" / "claw.db").events(task_id=1, kinds=["attempt.continued"])
    assert len(events) == 1 and events[0]["data"]["from_attempt"] == one["id"]
    assert events[0]["data"]["session"] == "trajectory-1.json"


@pytest.mark.slow
def test_send_back_rebases_the_earlier_work_onto_a_moved_target(repo):
    agent = agent_script(repo, "editor", """
        if grep -q "Feedback on the previous attempt" "$CLAW_PROMPT_FILE"; then
            grep -q "This continues attempt 1" "$CLAW_PROMPT_FILE" || exit 3
            echo second >> work.txt
        else
            echo first > work.txt
        fi
        """)
    write_config(repo, f"""
        [fleet]
        default_agent = "editor"
        max_attempts = 2
        [review]
        auto_approve = []
        [agents.editor]
        kind = "command"
        command = ["{agent}"]
        """)
    claw(repo, "add", "Write work.txt")
    assert claw(repo, "run").returncode == 0
    (repo / "other.txt").write_text("someone else's change\n")
    git.git("add", "other.txt", cwd=repo)
    git.git("commit", "-qm", "meanwhile on main", cwd=repo, identity=True)
    assert claw(repo, "reject", "1", "--feedback", "add a second line").returncode == 0
    result = claw(repo, "run")
    assert "attempt 2 continues attempt 1's work, rebased onto main" in result.stdout
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review", (task, claw(repo, "log", "1").stdout[-2000:])
    assert attempt["base_commit"] == git.rev(repo, "main")
    assert git.out("show", f"{attempt['branch']}:work.txt", cwd=repo) == "first\nsecond"
    assert git.changed_files(repo, "main", attempt["branch"]) == ["work.txt"]


@pytest.mark.slow
def test_send_back_whose_work_no_longer_rebases_starts_fresh_with_the_diff_and_says_so(repo):
    agent = agent_script(repo, "editor", """
        if grep -q "Feedback on the previous attempt" "$CLAW_PROMPT_FILE"; then
            grep -q "no longer applies cleanly" "$CLAW_PROMPT_FILE" || exit 3
            grep -q "^+mine" "$CLAW_PROMPT_FILE" || exit 4          # the earlier diff
            printf 'theirs\\nmine, merged\\n' > app.txt
        else
            echo mine > app.txt
        fi
        """)
    write_config(repo, f"""
        [fleet]
        default_agent = "editor"
        max_attempts = 2
        [review]
        auto_approve = []
        [agents.editor]
        kind = "command"
        command = ["{agent}"]
        """)
    claw(repo, "add", "Change app.txt")
    assert claw(repo, "run").returncode == 0
    (repo / "app.txt").write_text("theirs\n")     # main changes the same line meanwhile
    git.git("commit", "-qam", "main changes app.txt", cwd=repo, identity=True)
    assert claw(repo, "reject", "1", "--feedback", "keep what main has too").returncode == 0
    result = claw(repo, "run")
    said = ("attempt 1's branch no longer rebases cleanly on main (conflicts in app.txt): "
            "attempt 2 starts fresh from main, with that diff and the feedback in its prompt")
    assert said in result.stdout, result.stdout
    task = status_json(repo)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "review", (task, claw(repo, "log", "1").stdout[-2000:])
    assert git.out("show", f"{attempt['branch']}:app.txt", cwd=repo) == "theirs\nmine, merged"
    assert len(git.commits_between(repo, "main", attempt["branch"])) == 1   # none of attempt 1's
    events = Store(repo / ".claw" / "run" / "claw.db").events(task_id=1, kinds=["attempt.fresh_start"])
    assert len(events) == 1 and events[0]["data"]["conflicts"] == ["app.txt"]
    assert events[0]["data"]["reason"] == said


def test_a_session_is_copied_without_following_links(tmp_path):
    """The earlier attempt's agent wrote its session folder: a link there must not carry a file
    from outside (the person's secrets) into the next attempt's HOME."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the person's key\n")
    earlier = tmp_path / "earlier" / "projects" / "p"
    earlier.mkdir(parents=True)
    (earlier / "abc.jsonl").write_text('{"turn": 1}\n')
    (earlier / "linked.jsonl").symlink_to(secret)
    (tmp_path / "earlier" / "projects" / "q").symlink_to(tmp_path, target_is_directory=True)
    source, target = tmp_path / "earlier" / "projects", tmp_path / "later"
    files = session_files(source, "*.jsonl") + [source / "q" / "secret.txt"]
    assert copy_session_files(source, target, files) == 1
    assert (target / "p" / "abc.jsonl").read_text() == '{"turn": 1}\n'
    assert not (target / "p" / "linked.jsonl").exists() and not (target / "q").exists()
    assert not any("the person's key" in p.read_text() for p in target.rglob("*") if p.is_file())
    assert os.listdir(target) == ["p"]


@pytest.mark.slow
def test_an_attempt_whose_runner_died_mid_turn_is_resumed_from_its_session(repo):
    """A crash or a reboot mid-turn: the retry takes up the agent's session where it was cut off,
    with a 'you were interrupted' turn, in a workspace at the work it had left (committed when
    the crashed attempt was released), rather than starting over."""
    import signal
    import subprocess
    import sys

    from clawfleet.procs import pid_alive
    from test_recovery import wait_for

    script = Script.from_rules([{"match": "Write part.txt", "steps": [
        {"command": "echo partial > part.txt && sleep 300"},      # cut off here
        {"command": "echo done >> part.txt"},                     # reached only in the same conversation
        {"done": "finished part.txt after the interruption"},
    ]}])
    with ScriptedServer(script) as server:
        configure_builtin(repo, server, ["grep -q done part.txt"])
        (repo / ".claw" / "config.toml").write_text(
            (repo / ".claw" / "config.toml").read_text().replace("max_attempts = 3", "max_attempts = 2"))
        claw(repo, "add", "Write part.txt")
        orchestrator = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: any((repo / ".claw" / "run" / "worktrees").glob("*/part.txt")), timeout=60)
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait()
        runner_pid = status_json(repo)[0]["latest_attempt"]["pid"]
        os.killpg(runner_pid, signal.SIGKILL)   # the runner dies mid-turn, writing no status
        wait_for(lambda: not pid_alive(runner_pid))

        result = claw(repo, "run", timeout=200)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert [a["state"] for a in shown["attempts"]] == ["crashed", "ready"], (task, claw(repo, "log", "1").stdout[-2000:])
    two = task["latest_attempt"]
    assert task["state"] == "review" and two["summary"] == "finished part.txt after the interruption"

    # Three model turns in all: the retry's first request is the crashed turn's conversation
    # with the interruption as its next turn, not the task from the start.
    assert len(requests) == 3
    resumed = transcript_of(requests[1])
    assert "echo partial > part.txt" in resumed and "# You were interrupted" in resumed
    assert (attempt_dir(repo, two["id"]) / "prompt-0.md").read_text().startswith("# You were interrupted")
    assert "attempt 2 continues interrupted attempt 1's work" in result.stdout
    # The work it had left uncommitted went on into the retry's branch.
    assert git.out("show", f"{two['branch']}:part.txt", cwd=repo) == "partial\ndone"
    events = Store(repo / ".claw" / "run" / "claw.db").events(task_id=1, kinds=["attempt.continued"])
    assert len(events) == 1 and events[0]["data"]["interrupted"] is True
    assert events[0]["data"]["session"] == "trajectory-0.json"
