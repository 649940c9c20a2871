"""The built-in agent's sandbox: bubblewrap keeps writes in the worktree and the network off."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clawfleet import sandbox
from clawfleet.config import SandboxConfig
from clawfleet.errors import ClawError
from clawfleet.llm.scripted import Script, ScriptedServer

from conftest import claw, write_config
from test_run import status_json

BWRAP, WHY_NOT = sandbox.probe()
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason=f"no working bubblewrap here: {WHY_NOT}")


def run_in(policy, command: str, worktree: Path, project_root: Path | None = None):
    args = sandbox.wrap(policy, ["bash", "-c", command], worktree=worktree, project_root=project_root)
    return subprocess.run(args, cwd=worktree, capture_output=True, text=True, timeout=30)


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 that accepts whatever connects; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


CONNECT = "{python} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')\""


@needs_bwrap
def test_writes_stay_in_the_worktree(tmp_path):
    project = tmp_path / "project"
    worktree = project / ".claw" / "run" / "worktrees" / "attempt-1"
    worktree.mkdir(parents=True)
    policy = sandbox.SandboxPolicy(BWRAP)
    inside = run_in(policy, "echo made > inside.txt && cat inside.txt", worktree, project)
    assert inside.returncode == 0, inside.stderr
    assert (worktree / "inside.txt").read_text() == "made\n"
    outside = run_in(policy, f"echo escaped > {project}/outside.txt", worktree, project)
    assert outside.returncode != 0 and "Read-only file system" in outside.stderr
    assert not (project / "outside.txt").exists()
    home = run_in(policy, "touch ~/claw-sandbox-probe", worktree, project)
    assert home.returncode != 0 and not Path("~/claw-sandbox-probe").expanduser().exists()
    # The person's checkout (their .env, .claw/run with the store) is hidden; /tmp is private.
    (project / ".env").write_text("SECRET=1\n")
    hidden = run_in(policy, f"cat {project}/.env; ls -A {project}; touch /tmp/scratch && echo ok", worktree, project)
    assert "SECRET" not in hidden.stdout and hidden.stdout.split() == [".claw", "ok"], hidden
    assert not Path("/tmp/scratch").exists()


@needs_bwrap
def test_network_is_off_unless_allowed(tmp_path, listener):
    worktree = tmp_path / "wt"
    worktree.mkdir()
    command = CONNECT.format(python=sys.executable, port=listener)
    unsandboxed = run_in(None, command, worktree)
    assert unsandboxed.stdout.strip() == "connected", unsandboxed.stderr
    cut_off = run_in(sandbox.SandboxPolicy(BWRAP), command, worktree)
    assert cut_off.returncode != 0 and "connected" not in cut_off.stdout
    assert "Network is unreachable" in cut_off.stderr or "Connection refused" in cut_off.stderr
    allowed = run_in(sandbox.SandboxPolicy(BWRAP, network=True), command, worktree)
    assert allowed.stdout.strip() == "connected", allowed.stderr


def test_without_bwrap_auto_warns_once_and_true_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no bwrap on it
    warnings: list[str] = []
    assert sandbox.resolve(SandboxConfig(enabled="auto"), warn=warnings.append) is None
    assert len(warnings) == 1 and "UNSANDBOXED" in warnings[0] and "apt-get install bubblewrap" in warnings[0]
    with pytest.raises(ClawError) as error:
        sandbox.resolve(SandboxConfig(enabled=True), warn=warnings.append)
    assert "bwrap" in error.value.message and "apt-get install bubblewrap" in error.value.hint
    assert sandbox.resolve(SandboxConfig(enabled=False), warn=warnings.append) is None
    assert len(warnings) == 1   # enabled = false is the person's own choice: claw status says it


def test_claw_run_refuses_when_the_sandbox_is_required_but_missing(project, tmp_path):
    write_config(project.root, "[sandbox]\nenabled = true\n")
    assert claw(project.root, "add", "x").returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/git", bin_dir / "git")
    result = claw(project.root, "run", env={"PATH": str(bin_dir)})
    assert result.returncode == 1 and "[sandbox] enabled = true" in result.stderr
    assert "install bubblewrap" in result.stderr and "Traceback" not in result.stderr
    assert status_json(project.root)[0]["state"] == "queued"   # nothing started, nothing lost


@needs_bwrap
def test_builtin_agent_runs_its_commands_in_the_sandbox(repo, listener):
    """End to end: `claw run`, the built-in agent on the scripted model; its write outside the
    worktree and its network call fail, its work in the worktree and its memory note land."""
    outside = repo / "outside.txt"     # the person's checkout, outside the attempt's worktree
    script = Script.from_rules([{"match": "Write the greeting", "steps": [
        {"command": "echo hello > greeting.txt"},
        {"command": f"echo escaped > {outside}"},
        {"command": CONNECT.format(python=sys.executable, port=listener)},
        {"command": f'{sys.executable} -m clawfleet memory add "greetings are lowercase" --tag style'},
        {"done": "wrote greeting.txt"},
    ]}])
    with ScriptedServer(script) as server:
        write_config(repo, f"""
            [fleet]
            max_attempts = 1
            [review]
            auto_approve = ["normal"]
            [sandbox]
            enabled = "auto"
            [agents.builtin]
            kind = "builtin"
            provider = "openai"
            model = "scripted"
            base_url = "{server.openai_base_url}"
            """)
        assert claw(repo, "add", "Write the greeting").returncode == 0
        result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert "UNSANDBOXED" not in result.stdout + result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "merged", task
    assert (repo / "greeting.txt").read_text() == "hello\n"
    assert not outside.exists()
    log = (repo / ".claw/run/attempts/1/agent.log").read_text()
    assert "Read-only file system" in log
    assert "[exit code 1]\nTraceback" in log and "\nconnected\n" not in log   # the listener was out of reach
    notes = json.loads(claw(repo, "memory", "list", "--tag", "style", "--json").stdout)
    assert [n["body"] for n in notes] == ["greetings are lowercase"]
    assert notes[0]["source"] == "agent" and notes[0]["task_id"] == task["id"]


@needs_bwrap
def test_killing_a_sandboxed_group_ends_everything_inside(tmp_path):
    """The runner stops an agent by killing its process group: in the sandbox that is bwrap, and
    every process inside (its own pid namespace) goes with it, background children included."""
    worktree = tmp_path / "wt"
    worktree.mkdir()
    marker = "317.25"   # an argv no other process here has
    args = sandbox.wrap(sandbox.SandboxPolicy(BWRAP), ["bash", "-c", f"sleep {marker} & sleep {marker}"],
                        worktree=worktree)
    proc = subprocess.Popen(args, cwd=worktree, process_group=0)
    found = lambda: subprocess.run(["pgrep", "-f", f"^sleep {marker}"], capture_output=True).stdout.split()
    deadline = time.time() + 10
    while len(found()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(found()) == 2
    os.killpg(proc.pid, 9)
    proc.wait(timeout=10)
    deadline = time.time() + 10
    while found() and time.time() < deadline:
        time.sleep(0.05)
    assert found() == []
