"""An ACP agent asks clawfleet, which serves its file reads and writes outside the agent's sandbox,
for files outside its worktree: by `..`, by absolute path, through a symlink it made (as a folder
on the way, or as the file itself), through a hard link, into `.git`, and a FIFO that would hang a
naive reader, from inside its sandbox. Every one is refused (the hard link is replaced, not written through), nothing
outside changes or leaks, and the fleet goes on: the
same attempt's honest write lands, and so does the next task."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from clawfleet import git

from conftest import claw, write_config
from test_run import status_json

AGENT = str(Path(__file__).resolve().parent.parent / "acp_agent.py")
SECRET = "hunter2-do-not-leak"


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
def test_an_acp_agent_cannot_read_or_write_outside_its_worktree_through_clawfleet(repo, sandboxed):
    outside = repo.parent / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(SECRET + "\n")
    victim = outside / "victim.txt"
    victim.write_text("untouched\n")
    linked = outside / "linked.txt"      # hard-linked into the worktree by the agent
    linked.write_text("untouched\n")
    person = repo / "app.txt"            # the person's checkout, beside the worktree

    attack = [
        {"shell": f"ln -s {outside} out; ln -s {victim} victim-link; ln -s {secret} secret-link; mkfifo pipe"},
        {"shell": f"ln {linked} hard.txt"},   # sandboxed, `linked` is out of sight: it fails
        {"write": "../../../../../outside/victim.txt", "content": "pwned by ..\n"},
        {"write": "../../../../../outside/new-by-dots.txt", "content": "pwned\n"},
        {"write": str(victim), "content": "pwned by absolute path\n"},
        {"write": str(person), "content": "pwned the person's checkout\n"},
        {"write": "out/victim.txt", "content": "pwned through a symlinked folder\n"},
        {"write": "out/new-through-link.txt", "content": "pwned\n"},
        {"write": "victim-link", "content": "pwned through a symlinked file\n"},
        {"write": "hard.txt", "content": "pwned through a hard link\n"},
        {"write": ".git", "content": f"gitdir: {outside}\n"},
        {"write": "sub/../.git/config", "content": "[core]\n\tfsmonitor = /bin/true\n"},
        {"read": str(secret)},
        {"read": "secret-link"},
        {"read": "out/secret.txt"},
        {"read": "../../../../../outside/secret.txt"},
        {"read": "pipe"},
        {"shell": "rm -f out victim-link secret-link pipe hard.txt"},
        {"write": "honest.txt", "content": "inside, as it should be\n"},
        {"say": "tried my luck"},
    ]
    honest = [{"write": "second.txt", "content": "the next task\n"}, {"say": "done"}]
    # The actions in the variable itself: a sandboxed agent sees no file of the test's.
    actions, after = json.dumps(json.dumps([attack])), json.dumps(json.dumps([honest]))
    write_config(repo, f"""
        [fleet]
        default_agent = "acp"
        attempt_timeout = 60
        max_attempts = 1
        slots = 1
        [review]
        auto_approve = ["normal"]
        [sandbox]
        enabled = {"true" if sandboxed else "false"}
        [agents.acp]
        kind = "acp"
        command = ["{sys.executable}", "{AGENT}"]
        env = {{ ACP_TEST_ACTIONS = {actions} }}
        [agents.honest]
        kind = "acp"
        command = ["{sys.executable}", "{AGENT}"]
        env = {{ ACP_TEST_ACTIONS = {after} }}
        """)
    assert claw(repo, "add", "Attack the file service").returncode == 0
    assert claw(repo, "add", "An honest task after it", "--depends", "1",
                "--agent", "honest").returncode == 0
    result = claw(repo, "run", timeout=180)
    assert result.returncode == 0, result.stderr

    # Nothing outside the worktree changed, appeared or leaked.
    assert victim.read_text() == "untouched\n" and linked.read_text() == "untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["linked.txt", "secret.txt", "victim.txt"]
    assert person.read_text() == "one\n"
    run = repo / ".claw" / "run"
    attempt_dirs = sorted((run / "attempts").iterdir())
    got = [json.loads(line) for line in (attempt_dirs[0] / "acp-home" / "acp-test-results.jsonl").read_text().splitlines()]
    tries = [r for r in got if {"write", "read"} & set(r["action"])]
    assert len(tries) == 16
    # The hard-linked file is the worktree's own to rewrite: the write replaces it, the link breaks.
    expected = [False] * 7 + [True] + [False] * 7 + [True]
    assert [r["ok"] for r in tries] == expected, [(r["action"], r.get("data")) for r in tries]
    for leaked in (attempt_dirs[0] / "acp-0.jsonl", attempt_dirs[0] / "agent.log",
                   attempt_dirs[0] / "acp-home" / "acp-test-results.jsonl"):
        assert SECRET not in leaked.read_text(), leaked
    log = (attempt_dirs[0] / "agent.log").read_text()
    assert ("[UNSANDBOXED]" in log) is not sandboxed
    assert log.count("!  write refused") == 9 and log.count("!  read refused") == 5, log
    assert "is one of git's own files" in log and "is not a regular file" in log

    # The worktree's git is intact, and the fleet went on: both tasks landed.
    tasks = {t["title"]: t for t in status_json(repo)}
    first, second = tasks["Attack the file service"], tasks["An honest task after it"]
    assert first["state"] == "merged", (first["reason"], log[-2000:])
    assert second["state"] == "merged", second["reason"]
    assert (repo / "honest.txt").read_text() == "inside, as it should be\n"
    assert (repo / "second.txt").read_text() == "the next task\n"
    assert not (repo / "hard.txt").exists() and git.out("status", "--porcelain", cwd=repo) == "?? .claw/"
    # (read from the file: clawfleet's own git calls always pass core.fsmonitor=false)
    assert git.git("config", "--file", str(repo / ".git" / "config"), "--get", "core.fsmonitor",
                   cwd=repo, check=False).stdout == ""
