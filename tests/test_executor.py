"""The local executor: runners forked from the zygote, told apart after a restart by pid and
start time, stopped whole; and the process helpers that notice an exit the moment it happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import agent_script

from clawfleet import git
from clawfleet.executors.local import LocalExecutor, Running
from clawfleet.models import AttemptState, Importance, Task
from clawfleet.procs import ChildGroups, ExitWatcher, pid_alive, start_time, wait_exit
from clawfleet.runner import AttemptSpec
from test_recovery import wait_for


def prepare_attempt(repo: Path, attempt_id: int, agent: str) -> tuple[Path, Path]:
    """An attempt folder with its spec and a worktree on its branch, as the orchestrator leaves them."""
    worktree = repo.parent / f"wt-{attempt_id}"
    branch = f"claw/{attempt_id}-test"
    base = git.rev(repo, "HEAD")
    git.add_worktree_on_branch(repo, worktree, branch, base)
    attempt_dir = repo.parent / "attempts" / str(attempt_id)
    attempt_dir.mkdir(parents=True)
    task = Task(id=attempt_id, title=f"task {attempt_id}", importance=Importance.normal)
    AttemptSpec(attempt_id=attempt_id, attempt_number=1, task=vars(task), project_root=str(repo),
                worktree=str(worktree), branch=branch, base_commit=base, agent_name="script",
                agent={"kind": "command", "command": [agent]}, checks=[], check_timeout=60,
                fix_rounds=0, deadline=time.time() + 60).save(attempt_dir)
    (attempt_dir / "prompt-0.md").write_text("do it\n")
    return attempt_dir, worktree


def status_of(attempt_dir: Path) -> dict:
    return json.loads((attempt_dir / "status.json").read_text())


def test_a_forked_runner_is_what_python_m_clawfleet_runner_would_be(repo, monkeypatch):
    facts = repo.parent / "facts"
    agent = agent_script(repo, "report", f"""
        echo "$$ $(ps -o pgid= -p $$) $(ps -o sid= -p $$)" > {facts}.ids
        pwd > {facts}.cwd
        echo "$LATE_VARIABLE" > {facts}.env
        echo "to the log"
        echo done > done.txt
        """)
    executor = LocalExecutor(zygote_log=repo.parent / "zygote.log")
    # Set after the executor (and its zygote) began: the runner still sees it, as a new process would.
    monkeypatch.setenv("LATE_VARIABLE", "seen")
    attempt_dir, worktree = prepare_attempt(repo, 1, agent)
    pid = executor.start(1, attempt_dir, cwd=worktree)
    wait_for(lambda: not isinstance(executor.poll(1, attempt_dir, pid), Running), timeout=30)

    status = executor.poll(1, attempt_dir, pid)
    assert status.outcome == AttemptState.ready, status
    assert git.out("show", f"{status.head_commit}:done.txt", cwd=repo) == "done"
    assert (attempt_dir / "runner.pid").read_text() == str(pid)
    runner_ids = (attempt_dir / "runner.id").read_text().split()
    assert runner_ids[0] == str(pid) and int(runner_ids[1]) > 0
    agent_pid, agent_group, agent_session = map(int, Path(f"{facts}.ids").read_text().split())
    assert agent_group == agent_pid                    # the agent leads its own group (ChildGroups)
    assert agent_session == pid                        # in the session the runner leads
    assert Path(f"{facts}.cwd").read_text().strip() == str(worktree)
    assert Path(f"{facts}.env").read_text().strip() == "seen"
    assert "to the log" in (attempt_dir / "agent.log").read_text()
    assert executor.zygote is not None and not executor.zygote.broken  # it was forked, not started anew
    executor.close()


def test_after_a_restart_the_runner_is_known_by_pid_and_start_time(repo):
    gate = repo.parent / "gate"
    agent = agent_script(repo, "gated", f"while [ ! -e {gate} ]; do sleep 0.05; done\necho x > x.txt\n")
    first = LocalExecutor()
    attempt_dir, worktree = prepare_attempt(repo, 1, agent)
    pid = first.start(1, attempt_dir, cwd=worktree)
    first.close()  # the orchestrator is gone, and its zygote with it; the runner goes on
    assert pid_alive(pid)

    again = LocalExecutor()  # a new orchestrator knows only the attempt folder and the store's pid
    assert isinstance(again.poll(1, attempt_dir, pid), Running)
    assert isinstance(again.poll(1, attempt_dir, None), Running)  # died before recording the pid
    # Another live process under that pid (pids get reused) is not our runner.
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        (attempt_dir / "runner.id").write_text(f"{stranger.pid} {start_time(stranger.pid)}\n")
        assert not LocalExecutor.is_our_runner(pid, attempt_dir)
        (attempt_dir / "runner.id").write_text(f"{pid} {start_time(pid) + 1}\n")
        assert not LocalExecutor.is_our_runner(pid, attempt_dir)
        (attempt_dir / "runner.id").write_text(f"{pid} {start_time(pid)}\n")
        assert LocalExecutor.is_our_runner(pid, attempt_dir)
    finally:
        stranger.kill()
        stranger.wait()
    gate.touch()
    wait_for(lambda: not pid_alive(pid))
    assert again.poll(1, attempt_dir, pid).outcome == AttemptState.ready


def test_a_runner_from_before_runner_id_is_known_by_its_command_line(tmp_path):
    attempt_dir = tmp_path / "attempts" / "7"
    attempt_dir.mkdir(parents=True)
    # What an older clawfleet started: `python -m clawfleet.runner ATTEMPT_DIR`, no runner.id.
    legacy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "clawfleet.runner",
                               str(attempt_dir)])
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert LocalExecutor.is_our_runner(legacy.pid, attempt_dir)
        assert not LocalExecutor.is_our_runner(other.pid, attempt_dir)
        assert not LocalExecutor.is_our_runner(legacy.pid, tmp_path / "attempts" / "8")
    finally:
        for proc in (legacy, other):
            proc.kill()
            proc.wait()


def test_stopping_a_forked_runner_kills_its_group_at_once(repo):
    pids = repo.parent / "pids"
    agent = agent_script(repo, "hang", f"sleep 300 &\necho $! > {pids}\nwait\n")
    executor = LocalExecutor()
    attempt_dir, worktree = prepare_attempt(repo, 1, agent)
    pid = executor.start(1, attempt_dir, cwd=worktree)
    wait_for(lambda: pids.exists() and pids.read_text().strip())
    started = time.monotonic()
    executor.stop(1, attempt_dir, pid)
    # The zygote reaps its runner at once: stop does not sit out the kill grace for a zombie.
    assert time.monotonic() - started < 2.5
    assert not pid_alive(pid) and not pid_alive(int(pids.read_text()))
    assert status_of(attempt_dir)["outcome"] == "cancelled"  # the runner saved its work and said so
    executor.close()


def test_without_a_zygote_runners_start_as_new_processes(repo):
    executor = LocalExecutor()
    attempt_dir, worktree = prepare_attempt(repo, 1, agent_script(repo, "a", "echo a > a.txt\n"))
    executor.start(1, attempt_dir, cwd=worktree)
    zygote = executor.zygote._proc
    zygote.kill()  # the zygote dies under the executor
    zygote.wait()
    attempt_dir, worktree = prepare_attempt(repo, 2, agent_script(repo, "b", "echo b > b.txt\n"))
    pid = executor.start(2, attempt_dir, cwd=worktree)
    assert executor.zygote.broken
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid_alive(pid) else []
    assert not args or b"clawfleet.runner" in args
    wait_for(lambda: not isinstance(executor.poll(2, attempt_dir, pid), Running), timeout=30)
    assert executor.poll(2, attempt_dir, pid).outcome == AttemptState.ready


def test_the_zygote_ends_with_the_process_that_started_it(repo, tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        "from clawfleet.executors.zygote import Zygote\n"
        "zygote = Zygote()\nzygote.warm()\nzygote._started()\n"
        "print(zygote._proc.pid, flush=True)\ntime.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    zygote_pid = int(owner.stdout.readline())
    assert pid_alive(zygote_pid)
    owner.send_signal(signal.SIGKILL)  # no chance to clean up
    owner.wait()
    wait_for(lambda: not pid_alive(zygote_pid), timeout=10)


# -- noticing exits --------------------------------------------------------------------------

def test_wait_exit_returns_when_the_process_ends_or_the_time_is_up():
    quick = subprocess.Popen(["sleep", "0.2"])
    assert wait_exit(quick, 10) and quick.returncode == 0
    slow = subprocess.Popen(["sleep", "30"])
    started = time.monotonic()
    assert not wait_exit(slow, 0.3)
    assert 0.25 < time.monotonic() - started < 5 and slow.returncode is None
    slow.kill()
    slow.wait()


def test_child_groups_run_with_a_log_still_times_out_and_kills(tmp_path):
    children = ChildGroups(tmp_path / "children")
    finished, _ = children.run(["sleep", "30"], cwd=tmp_path, env=dict(os.environ), timeout=0.3,
                               log=tmp_path / "log")
    assert finished.timed_out and finished.duration < 10
    finished, _ = children.run(["sh", "-c", "echo hi; exit 3"], cwd=tmp_path, env=dict(os.environ),
                               timeout=10, log=tmp_path / "log")
    assert finished.exit_code == 3 and not finished.timed_out
    assert (tmp_path / "log").read_text() == "hi\n"


def test_exit_watcher_calls_back_for_processes_that_are_not_its_children():
    ended = threading.Event()
    watcher = ExitWatcher(ended.set)
    # A grandchild: the shell prints its pid and leaves it running on its own.
    shell = subprocess.run(["sh", "-c", "sleep 0.5 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    grandchild = int(shell.stdout)
    longer = subprocess.Popen(["sleep", "30"])
    watcher.watch(longer.pid)
    watcher.watch(grandchild)
    watcher.watch(grandchild)  # once is enough
    assert ended.wait(10)
    assert not pid_alive(grandchild) and longer.poll() is None
    ended.clear()
    longer.kill()
    assert ended.wait(10)
    longer.wait()
    wait_for(lambda: watcher._thread is None, timeout=5)  # nothing left to watch: its thread ended
