"""The daemon: `claw up` / `claw down`, kill -9 and resume, one per repository; schedules,
watchers and the heartbeat; a webhook task whose review and landing reach a local HTTP endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import agent_script, claw, write_config
from receiver import Receiver
from test_recovery import wait_for
from test_run import configure, status_json

from clawfleet.config import Config, ScheduleConfig, WatcherConfig
from clawfleet.daemon import running_daemon
from clawfleet.errors import ClawError
from clawfleet.heartbeat import Heartbeat
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.procs import cmdline, pid_alive
from clawfleet.project import Project
from clawfleet.schedules import Schedules
from clawfleet.watchers import Watchers


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def start_daemon(repo: Path) -> subprocess.Popen:
    """`python -m clawfleet up` in the foreground, as a person would start it; returns once it is up."""
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet", "up"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (running_daemon(repo / ".claw" / "run") or proc.poll() is not None))
    assert proc.poll() is None, proc.stdout.read()
    return proc


def add_config(repo: Path, text: str) -> None:
    path = repo / ".claw" / "config.toml"
    path.write_text(path.read_text() + "\n" + text)


# -- the daemon as a process -----------------------------------------------------------------

def test_kill_9_then_up_again_reattaches_and_runs_nothing_twice(repo):
    starts = repo.parent / "starts"
    starts.mkdir()
    agent = agent_script(repo, "sleepy", f"""
        echo "$$" >> {starts}/$CLAW_TASK_ID
        sleep 8   # room for a loaded machine: the runners must still be alive when the test looks
        echo "work of $CLAW_TASK_ID" > "out-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"sleepy": agent}, slots=2)
    add_config(repo, "[daemon]\ntick = 0.1\n")
    claw(repo, "add", "one")
    claw(repo, "add", "two")
    daemon = start_daemon(repo)
    wait_for(lambda: len(list(starts.iterdir())) == 2)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    running = [t for t in status_json(repo) if t["state"] == "running"]
    assert len(running) == 2 and all(pid_alive(t["latest_attempt"]["pid"]) for t in running)
    assert "daemon: not running" in claw(repo, "status").stdout  # the stale daemon.json is ignored

    daemon = start_daemon(repo)
    try:
        wait_for(lambda: [t["state"] for t in status_json(repo)] == ["merged", "merged"])
        claw(repo, "add", "three")                               # an idle daemon picks up new work
        wait_for(lambda: [t["state"] for t in status_json(repo)] == ["merged"] * 3)
    finally:
        stopped = claw(repo, "down")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert daemon.wait(10) == 0
    log = daemon.stdout.read()
    assert "reattaching to 2 running attempt(s)" in log and "claw daemon down" in log
    for task in status_json(repo):
        assert len((starts / str(task["id"])).read_text().split()) == 1   # one agent start each
        assert len(json.loads(claw(repo, "show", str(task["id"]), "--json").stdout)["attempts"]) == 1
    assert sorted(p.name for p in repo.glob("out-*.txt")) == ["out-1.txt", "out-2.txt", "out-3.txt"]
    assert not (repo / ".claw" / "run" / "daemon.json").exists()


def test_one_daemon_per_repository_and_claw_run_is_told_why(repo):
    configure(repo, {"noop": agent_script(repo, "noop", "true\n")})
    daemon = start_daemon(repo)
    try:
        second = claw(repo, "up")
        assert second.returncode == 1
        assert f"a claw daemon (pid {daemon.pid}" in second.stderr and "claw down" in second.stderr
        run = claw(repo, "run")
        assert run.returncode == 1 and f"the claw daemon (pid {daemon.pid}) drives this repository" in run.stderr
        assert f"daemon: running (pid {daemon.pid}, up " in claw(repo, "status").stdout
    finally:
        claw(repo, "down")
    assert daemon.wait(10) == 0
    assert "daemon: not running" in claw(repo, "status").stdout
    assert "no claw daemon runs" in claw(repo, "down").stdout


def test_up_while_claw_run_drives_the_repository_says_only_the_refusal(repo):
    stamp = repo.parent / "started"
    configure(repo, {"slow": agent_script(repo, "slow", f"touch {stamp}; sleep 30\n")})
    claw(repo, "add", "take a while")
    run = subprocess.Popen([sys.executable, "-m", "clawfleet", "run"], cwd=repo,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(stamp.exists)
        up = claw(repo, "up")
        assert up.returncode == 1
        assert f"another claw orchestrator (pid {run.pid}) is running" in up.stderr, up.stderr
        assert "daemon up" not in up.stdout + up.stderr and "daemon down" not in up.stdout + up.stderr, up.stdout
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(30)
        claw(repo, "cancel", "1")


def test_down_leaves_attempts_running_and_down_wait_lets_them_finish(repo):
    gates = repo.parent / "gates"
    gates.mkdir()
    agent = agent_script(repo, "gated", f"""
        while [ ! -e {gates}/$CLAW_TASK_ID ]; do sleep 0.05; done
        echo "$CLAW_TASK_ID" > "done-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"gated": agent}, slots=1)
    add_config(repo, "[daemon]\ntick = 0.1\n")
    claw(repo, "add", "first")
    claw(repo, "add", "second")
    daemon = start_daemon(repo)
    wait_for(lambda: status_json(repo)[0]["state"] == "running")
    assert claw(repo, "down").returncode == 0             # SIGTERM: stop now, the attempt goes on
    assert daemon.wait(10) == 0
    runner = status_json(repo)[0]["latest_attempt"]["pid"]
    assert status_json(repo)[0]["state"] == "running" and pid_alive(runner)

    result = subprocess.run([sys.executable, "-m", "clawfleet", "up", "--detach"], cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "claw daemon up in the background" in result.stdout, result.stderr
    info = running_daemon(repo / ".claw" / "run")
    log = repo / ".claw" / "run" / "daemon.log"
    (gates / "1").touch()
    wait_for(lambda: [t["state"] for t in status_json(repo)] == ["merged", "running"])
    stopping = subprocess.Popen([sys.executable, "-m", "clawfleet", "down", "--wait"], cwd=repo,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "draining" in log.read_text())          # no new attempts; waits for task 2
    time.sleep(0.5)
    assert stopping.poll() is None and pid_alive(info.pid)
    (gates / "2").touch()
    assert stopping.wait(30) == 0, stopping.stderr.read()
    assert not pid_alive(info.pid)
    assert [t["state"] for t in status_json(repo)] == ["merged", "merged"]
    assert "reattaching to 1 running attempt(s)" in log.read_text()


def test_webhook_task_reaches_review_then_lands_and_both_are_notified(repo):
    agent = agent_script(repo, "writer", 'echo "hello" > greeting.txt\n')
    configure(repo, {"writer": agent}, auto_approve="[]")
    with Receiver() as receiver:
        add_config(repo, f"""
[daemon]
tick = 0.1
[webhook]
enabled = true
port = 0
[notify]
urls = ["{receiver.json_url}"]
""")
        daemon = start_daemon(repo)
        try:
            url = running_daemon(repo / ".claw" / "run").webhook
            token = (repo / ".claw" / "run" / "webhook.token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            assert httpx.post(url + "/tasks", json={"title": "Greet"}, timeout=10).status_code == 401
            created = httpx.post(url + "/tasks", json={"title": "Greet", "body": "write greeting.txt"},
                                 headers=auth, timeout=10)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            receiver.wait_for(lambda m: any("needs your review" in x for x in m))
            shown = httpx.get(f"{url}/tasks/{task_id}", headers=auth, timeout=10).json()
            assert shown["files"] == [{"path": "greeting.txt", "added": 1, "deleted": 0}]
            assert httpx.post(f"{url}/tasks/{task_id}/approve", headers=auth, timeout=10).status_code == 200
            messages = receiver.wait_for(lambda m: any("landed" in x for x in m))
        finally:
            claw(repo, "down")
            daemon.wait(10)
    assert messages == [f"task {task_id} (Greet) needs your review: ready for review: risk "
                        + messages[0].rsplit("risk ", 1)[1], messages[1]]
    assert messages[1].startswith(f"task {task_id} (Greet) landed (landed as ")
    assert subprocess.run(["git", "show", "main:greeting.txt"], cwd=repo, capture_output=True,
                          text=True).stdout == "hello\n"


# -- schedules -------------------------------------------------------------------------------

def test_a_schedule_fires_once_per_due_time_even_across_restarts(project):
    clock = Clock(datetime(2026, 11, 23, 1, 58))
    nightly = ScheduleConfig.model_validate({"name": "nightly", "cron": "0 2 * * *", "task": {
        "title": "Research flaky tests", "kind": "research", "importance": "low",
        "footprint": ["docs/**"], "agent": "builtin"}})
    schedules = Schedules(project.store, [nightly], clock=clock)
    assert schedules.fire_due() == []           # first sight: counts from now
    clock.advance(60)                           # 01:59
    assert schedules.fire_due() == []
    clock.advance(60)                           # 02:00: due
    [task_id] = schedules.fire_due()
    assert schedules.fire_due() == []           # same due time: not again
    restarted = Schedules(Project(project.root).store, [nightly], clock=clock)
    assert restarted.fire_due() == []           # nor after a restart
    clock.advance(3 * 86400)                    # three nights missed while down: fires once
    assert len(restarted.fire_due()) == 1
    assert restarted.fire_due() == []
    task = project.store.get_task(task_id)
    assert (task.title, task.kind, task.importance, task.footprint, task.agent) == \
        ("Research flaky tests", "research", "low", ["docs/**"], "builtin")
    assert "queued by schedule 'nightly'" in task.body
    assert [e["kind"] for e in project.store.events() if e["kind"].startswith("schedule")] == \
        ["schedule.armed", "schedule.fired", "schedule.fired"]


def test_schedule_and_watcher_config_errors_are_clear(repo):
    write_config(repo, '[[schedule]]\nname = "x"\ncron = "every night"\ntask = { title = "t" }\n')
    result = claw(repo, "status")
    assert result.returncode == 1 and "not a valid cron expression: 'every night'" in result.stderr
    write_config(repo, '[[watcher]]\nname = "w"\ncommand = "true"\non = "match"\n')
    assert "on = 'match' needs a `pattern`" in claw(repo, "status").stderr
    write_config(repo, '[[watcher]]\nname = "w"\ncommand = "true"\n[[watcher]]\nname = "w"\ncommand = "false"\n')
    assert "two [[watcher]] entries are named 'w'" in claw(repo, "status").stderr


# -- watchers --------------------------------------------------------------------------------

def watcher(**fields) -> WatcherConfig:
    return WatcherConfig.model_validate({"name": "w", "interval": 10, **fields})


def test_a_watcher_fires_on_change_and_not_again_after_a_restart(project, repo):
    source = repo.parent / "status.txt"
    source.write_text("green\n")
    clock = Clock(datetime(2026, 11, 23, 12, 0))
    config = watcher(command=f"cat {source}", on="change",
                     task={"title": "CI changed: look", "importance": "high"})
    watchers = Watchers(project, [config], clock=clock)
    assert watchers.run_due() == []             # the first run only records the output
    clock.advance(10)
    assert watchers.run_due() == []             # unchanged
    source.write_text("red: test_login failed\n")
    clock.advance(5)
    assert watchers.run_due() == []             # not yet its interval
    clock.advance(5)
    [firing] = watchers.run_due()
    assert firing.reason == "its output changed" and firing.output == "red: test_login failed"
    task = project.store.get_task(firing.task_id)
    assert task.title == "CI changed: look" and task.importance == "high"
    assert "red: test_login failed" in task.body and f"cat {source}" in task.body
    [notification] = project.store.notifications()
    assert notification.kind == "watcher" and "red: test_login failed" in notification.summary
    clock.advance(10)
    restarted = Watchers(Project(project.root), [config], clock=clock)
    assert restarted.run_due() == []            # same output after a restart: no second firing
    assert len(project.store.list_tasks()) == 1


def test_a_watcher_fires_on_failure_once_until_it_recovers(project, repo):
    flag = repo.parent / "broken"
    clock = Clock(datetime(2026, 11, 23, 12, 0))
    watchers = Watchers(project, [watcher(command=f"test ! -e {flag} || {{ echo down; exit 3; }}", on="fail")],
                        clock=clock)
    assert watchers.run_due() == []
    flag.touch()
    clock.advance(10)
    [firing] = watchers.run_due()
    assert firing.reason == "it failed" and firing.output == "down" and firing.task_id is None
    clock.advance(10)
    assert watchers.run_due() == []             # still failing: told once
    flag.unlink()
    clock.advance(10)
    assert watchers.run_due() == []
    flag.touch()
    clock.advance(10)
    assert len(watchers.run_due()) == 1         # failing again after a recovery: told again
    assert "exit 3" in project.store.notifications()[0].summary


def test_a_watcher_fires_on_a_match_and_a_timeout_counts_as_failure(project, repo):
    log = repo.parent / "app.log"
    log.write_text("started\n")
    clock = Clock(datetime(2026, 11, 23, 12, 0))
    watchers = Watchers(project, [watcher(command=f"tail -n 2 {log}", on="match", pattern=r"delivery (arrived|left)")],
                        clock=clock)
    assert watchers.run_due() == []
    log.write_text("started\ncamera: delivery arrived at the door\n")
    clock.advance(10)
    [firing] = watchers.run_due()
    assert "matches" in firing.reason and "delivery arrived" in firing.output
    clock.advance(10)
    assert watchers.run_due() == []             # the same matching output: not again

    slow = Watchers(project, [watcher(name="slow", command="sleep 30", on="fail", timeout=0.5)], clock=clock)
    started = time.monotonic()
    [firing] = slow.run_due()
    assert time.monotonic() - started < 10 and "timed out after 0.5 s" in firing.output


# -- heartbeat -------------------------------------------------------------------------------

def heartbeat_project(repo: Path, server: ScriptedServer, minutes: float = 30) -> Project:
    write_config(repo, f"""
        [daemon]
        heartbeat_minutes = {minutes}
        [agents.builtin]
        kind = "builtin"
        provider = "openai"
        model = "scripted"
        base_url = "{server.openai_base_url}"
        """)
    return Project(repo)


def test_each_watcher_runs_on_its_own_and_down_stops_a_long_one_without_a_false_alarm(repo):
    # "slow" sleeps far past the test; "fast" must fire all the same, and `claw down` must not
    # wait for the sleep nor count the killed command as a failure.
    source, marker = repo.parent / "ci-status", "sleep 91.25"
    source.write_text("green\n")
    configure(repo, {"noop": agent_script(repo, "noop", "true\n")})
    add_config(repo, f"""
[[watcher]]
name = "slow"
command = "{marker}"
on = "fail"
interval = 1
timeout = 300
task = {{ title = "slow watcher task" }}
[[watcher]]
name = "fast"
command = "cat {source}"
on = "change"
interval = 1
task = {{ title = "CI changed" }}
""")
    daemon = start_daemon(repo)
    try:
        wait_for(lambda: any(marker in " ".join(cmdline(int(p))) for p in os.listdir("/proc") if p.isdigit()))
        time.sleep(1.5)                   # "fast" has run once and recorded "green"
        source.write_text("red\n")
        wait_for(lambda: any(t["title"] == "CI changed" for t in status_json(repo)))
    finally:
        started = time.monotonic()
        assert claw(repo, "down").returncode == 0
        assert daemon.wait(20) == 0
    assert time.monotonic() - started < 10
    assert not [p for p in os.listdir("/proc") if p.isdigit() and marker in " ".join(cmdline(int(p)))]
    assert not any(t["title"] == "slow watcher task" for t in status_json(repo))


def test_heartbeat_reads_the_checklist_and_queues_tasks_and_a_message(project, repo):
    (repo / "HEARTBEAT.md").write_text("- If there is no CHANGELOG, queue a task to write one.\n")
    (repo / "USER.md").write_text("The owner is Ada; she reads messages in the morning.\n")
    reply = json.dumps({"tasks": [{"title": "Write a CHANGELOG", "body": "From git log.", "importance": "low"}],
                        "message": "No CHANGELOG yet: I queued a task to write one."})
    with ScriptedServer(Script.from_rules([{"match": "heartbeat", "steps": [{"text": reply}]}])) as server:
        beating = heartbeat_project(repo, server)
        clock = Clock(datetime(2026, 11, 23, 12, 0))
        heartbeat = Heartbeat(beating, clock=clock)
        assert heartbeat.due()
        beat = heartbeat.beat_if_due()
        prompt = server.requests[0]["body"]["messages"][0]["content"]
        assert heartbeat.beat_if_due() is None   # not again before 30 minutes
        clock.advance(29 * 60)
        assert not Heartbeat(Project(repo), clock=clock).due()   # nor after a restart
        clock.advance(60)
        assert Heartbeat(Project(repo), clock=clock).due()
    assert "queue a task to write one" in prompt and "The owner is Ada" in prompt and "SOUL.md" in prompt
    [task] = beating.store.list_tasks()
    assert beat.tasks == [task.id] and task.title == "Write a CHANGELOG" and task.importance == "low"
    [notification] = beating.store.notifications()
    assert notification.kind == "heartbeat" and notification.summary == beat.message


def test_heartbeat_with_nothing_to_say_sends_nothing_and_without_a_checklist_asks_no_model(project, repo):
    quiet = json.dumps({"tasks": [], "message": ""})
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "Nothing today.\n" + quiet}]}])) as server:
        beating = heartbeat_project(repo, server, minutes=1)
        clock = Clock(datetime(2026, 11, 23, 12, 0))
        assert Heartbeat(beating, clock=clock).beat().tasks == []     # no HEARTBEAT.md
        assert server.requests == []
        (repo / "HEARTBEAT.md").write_text("- anything urgent?\n")
        clock.advance(60)
        beat = Heartbeat(beating, clock=clock).beat_if_due()
        assert len(server.requests) == 1 and beat.tasks == [] and beat.message == ""
    assert beating.store.list_tasks() == [] and beating.store.notifications() == []


def test_a_heartbeat_reply_that_is_not_json_is_a_clear_error_and_waits_a_period(project, repo):
    (repo / "HEARTBEAT.md").write_text("- check\n")
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "I feel fine, thanks."}]}])) as server:
        beating = heartbeat_project(repo, server)
        clock = Clock(datetime(2026, 11, 23, 12, 0))
        heartbeat = Heartbeat(beating, clock=clock)
        with pytest.raises(ClawError, match="did not reply with the JSON asked for"):
            heartbeat.beat_if_due()
        assert not heartbeat.due()              # tried again next period, not every tick


def test_config_defaults_keep_the_daemon_quiet():
    config = Config()
    assert config.daemon.heartbeat_minutes == 0 and config.schedule == [] and config.watcher == []
    assert config.notify.urls == [] and not config.webhook.enabled and not config.telegram.enabled
