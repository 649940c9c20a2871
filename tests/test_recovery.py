"""`kill -9` of the orchestrator mid-run loses nothing and runs nothing twice."""

from __future__ import annotations

import json
import os
import sqlite3
import signal
import subprocess
import sys
import time
from contextlib import closing

from clawfleet.procs import pid_alive

from conftest import agent_script, claw
from test_run import configure, status_json


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_sigkill_of_claw_run_then_rerun_reattaches_and_collects(repo):
    starts = repo.parent / "starts"
    starts.mkdir()
    # Task 1 ends while the orchestrator is dead (collected later); tasks 2-3 are still
    # running when it comes back (reattached); task 4 waits for a free slot.
    agent = agent_script(repo, "sleepy", f"""
        echo "$$" >> {starts}/$CLAW_TASK_ID
        if [ "$CLAW_TASK_ID" = 1 ]; then sleep 2; else sleep 6; fi
        echo "work of $CLAW_TASK_ID" > "out-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"sleepy": agent}, slots=3)
    for title in ("one", "two", "three", "four"):
        claw(repo, "add", title)
    orchestrator = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(list(starts.iterdir())) == 3)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    running = [t for t in status_json(repo) if t["state"] == "running"]
    assert len(running) == 3
    pids = {t["id"]: t["latest_attempt"]["pid"] for t in running}
    assert pid_alive(pids[2]) and pid_alive(pids[3])  # the runners outlived the orchestrator
    wait_for(lambda: not pid_alive(pids[1]))  # task 1's runner ends while nobody watches

    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged"] * 4
    for task in tasks:
        # Exactly one agent start per task and one attempt: nothing ran twice.
        assert len((starts / str(task["id"])).read_text().split()) == 1
        shown = json.loads(claw(repo, "show", str(task["id"]), "--json").stdout)
        assert len(shown["attempts"]) == 1
    assert sorted(p.name for p in repo.glob("out-*.txt")) == [f"out-{i}.txt" for i in range(1, 5)]


def test_runner_killed_with_its_agent_is_marked_crashed_and_retried(repo):
    starts = repo.parent / "starts"
    starts.mkdir()
    agent = agent_script(repo, "victim", f"""
        echo "$$" >> {starts}/$CLAW_TASK_ID
        n=$(wc -l < {starts}/$CLAW_TASK_ID)
        if [ "$n" = 1 ]; then sleep 300; fi
        echo ok > ok.txt
        """)
    configure(repo, {"victim": agent}, max_attempts=2)
    claw(repo, "add", "survive a crash")
    orchestrator = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (starts / "1").exists())
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    task = status_json(repo)[0]
    runner_pid = task["latest_attempt"]["pid"]
    agent_pid = int((starts / "1").read_text().split()[0])
    os.killpg(runner_pid, signal.SIGKILL)  # the runner dies without writing a status
    wait_for(lambda: not pid_alive(runner_pid))
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert [a["state"] for a in shown["attempts"]] == ["crashed", "merged"]
    assert not pid_alive(agent_pid)  # the orphaned agent was killed, not left running twice


def test_kill_right_after_an_auto_approval_still_lands_the_task(repo):
    agent = agent_script(repo, "writer", "echo done > done.txt\n")
    configure(repo, {"writer": agent})
    claw(repo, "add", "approve me")
    killed = claw(repo, "run", env={"CLAW_FAULT": "decided"})
    assert killed.returncode == -signal.SIGKILL
    assert status_json(repo)[0]["state"] == "approved"
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "merged"
    assert (repo / "done.txt").read_text() == "done\n"


def in_use_workspaces(repo) -> list[dict]:
    result = claw(repo, "workspace", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [w for w in json.loads(result.stdout) if w["state"] == "in_use"]


def test_kill_before_the_runner_starts_burns_no_try_and_frees_its_workspace(repo):
    starts = repo.parent / "starts"
    agent = agent_script(repo, "writer", f"echo started >> {starts}\necho done > done.txt\n")
    configure(repo, {"writer": agent}, max_attempts=1)
    claw(repo, "add", "start me")
    killed = claw(repo, "run", env={"CLAW_FAULT": "before-fork"})
    assert killed.returncode == -signal.SIGKILL
    assert not starts.exists()
    held = in_use_workspaces(repo)
    assert len(held) == 1 and held[0]["ports"]  # the kill left it taken, with its ports
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert shown["state"] == "merged"
    assert [a["state"] for a in shown["attempts"]] == ["merged"]  # restarted, not a second try
    assert starts.read_text() == "started\n"
    assert in_use_workspaces(repo) == []


def test_a_kill_before_the_fork_then_a_cancel_frees_the_workspace_at_the_next_run(repo):
    agent = agent_script(repo, "writer", "echo done > done.txt\n")
    configure(repo, {"writer": agent})
    claw(repo, "add", "never mind")
    assert claw(repo, "run", env={"CLAW_FAULT": "before-fork"}).returncode == -signal.SIGKILL
    assert claw(repo, "cancel", "1").returncode == 0
    assert len(in_use_workspaces(repo)) == 1
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert in_use_workspaces(repo) == []


def test_a_timeout_kills_a_daemon_the_agent_started_in_a_session_of_its_own(repo):
    pidfile = repo.parent / "daemon.pid"
    agent = agent_script(repo, "forker", f"""
        setsid bash -c 'trap "" TERM; echo $$ > {pidfile}; exec sleep 317' &
        sleep 60
        """)
    configure(repo, {"forker": agent}, timeout=3)
    claw(repo, "add", "leave a daemon")
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert status_json(repo)[0]["latest_attempt"]["state"] == "timed_out"
    daemon = int(pidfile.read_text())
    try:
        wait_for(lambda: not pid_alive(daemon), timeout=5)
    finally:
        if pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)  # not left running by a failed test


def test_an_attempt_whose_head_commit_git_does_not_know_fails_alone_at_recovery(repo):
    starts = repo.parent / "starts"
    starts.mkdir()
    agent = agent_script(repo, "writer", f"""
        touch {starts}/$CLAW_TASK_ID
        sleep 2
        echo "work of $CLAW_TASK_ID" > "out-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"writer": agent}, slots=2)
    for title in ("one", "two"):
        claw(repo, "add", title)
    orchestrator = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(list(starts.iterdir())) == 2)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    attempts = {t["id"]: t["latest_attempt"]["id"] for t in status_json(repo)}
    folders = {task: repo / ".claw" / "run" / "attempts" / str(attempt) for task, attempt in attempts.items()}
    wait_for(lambda: all((folder / "status.json").exists() for folder in folders.values()))
    # Task 1's runner reports a head commit the repository does not have (lost, or garbage).
    status = json.loads((folders[1] / "status.json").read_text())
    status["head_commit"] = "0123456789abcdef0123456789abcdef01234567"
    (folders[1] / "status.json").write_text(json.dumps(status))

    for _ in range(2):  # and the run after it is not stopped either
        result = claw(repo, "run")
        assert result.returncode == 0, result.stderr
    tasks = {t["id"]: t for t in status_json(repo)}
    assert tasks[2]["state"] == "merged"
    assert tasks[1]["state"] == "failed"
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert "0123456789abcdef0123456789abcdef01234567" in shown["attempts"][0]["reason"]


def test_an_approved_attempt_whose_head_commit_is_lost_fails_alone_and_the_rest_land(repo):
    configure(repo, {"writer": agent_script(repo, "writer", 'echo "$CLAW_TASK_ID" > "out-$CLAW_TASK_ID.txt"\n')},
              slots=2)
    claw(repo, "add", "one")
    claw(repo, "add", "two")
    # Killed right after the first decision: that task waits to land, the other still runs
    # (which of the two finished first is the machine's to say).
    assert claw(repo, "run", env={"CLAW_FAULT": "decided"}).returncode == -signal.SIGKILL
    [approved] = [t["id"] for t in status_json(repo) if t["state"] == "approved"]
    other = 3 - approved
    lost = "0123456789abcdef0123456789abcdef01234567"
    with closing(sqlite3.connect(repo / ".claw" / "run" / "claw.db")) as db, db:
        db.execute("UPDATE attempts SET head_commit = ? WHERE task_id = ?", (lost, approved))  # gone from git
    for _ in range(2):  # this run, and the one after it, go on
        result = claw(repo, "run")
        assert result.returncode == 0, result.stderr
    tasks = {t["id"]: t for t in status_json(repo)}
    assert tasks[other]["state"] == "merged"
    assert tasks[approved]["state"] == "failed" and lost in tasks[approved]["reason"]
