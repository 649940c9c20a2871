"""Notifications: from store events to an apprise URL on a real local HTTP endpoint; quiet hours, digest, retries."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import claw, write_config
from receiver import Receiver

from clawfleet.config import NotifyConfig
from clawfleet.errors import ClawError
from clawfleet.models import AttemptState, Importance, Notification, TaskState
from clawfleet.notify import Notifier, in_quiet_hours, parse_quiet_hours


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def to_review(store, title: str, importance: Importance = Importance.normal) -> int:
    """A task whose attempt has ended and now waits for a person, as the orchestrator leaves it."""
    task = store.add_task(title, importance=importance)
    attempt = store.start_attempt(task.id, agent="a", base_commit="0" * 40, branch_for=lambda n: f"b{n}")
    store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready", task_state=TaskState.review,
                         task_reason="ready for review: risk 12")
    return task.id


def test_an_attempt_waiting_for_review_is_sent_to_the_url(project):
    store = project.store
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url]))
        assert notifier.pump() == 0          # the first look starts after the existing history
        task_id = to_review(store, "Add a slugify helper")
        assert notifier.pump() == 1
        assert notifier.pump() == 0          # delivered once only
    [post] = receiver.posts
    assert post["path"] == "/notify"
    assert post["body"]["message"] == f"task {task_id} (Add a slugify helper) needs your review: ready for review: risk 12"
    assert post["body"]["title"].startswith("claw: task")
    [sent] = store.notifications()
    assert sent.kind == "review" and sent.sent_at is not None


def test_lands_failures_and_budget_refusals_become_notifications_and_others_do_not(project):
    store = project.store
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url]))
        notifier.pump()
        task = store.add_task("Doomed")
        store.move_task(task.id, TaskState.failed, "task.failed", reason="agent exited 3\nmore lines")
        store.record_event("attempt.over_budget", task_id=task.id, attempt_id=7, budget="attempt_usd",
                           spent=2.5, limit=2.0)
        store.record_event("attempt.stopped_over_budget", task_id=task.id, attempt_id=7)  # a newer kind
        store.record_event("radar.conflict", task_id=task.id)                              # not news
        assert notifier.pump() == 3
    assert receiver.messages() == [
        f"task {task.id} (Doomed) failed: agent exited 3",
        f"task {task.id} (Doomed): attempt 7 hit its attempt_usd budget (spent 2.5 of 2)",
        f"task {task.id} (Doomed): attempt 7 hit its budget",
    ]
    assert [n.importance for n in store.notifications()] == ["normal", "high", "high"]


def test_an_attempt_stopped_over_budget_is_told_once(project):
    store = project.store
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url]))
        notifier.pump()
        task = store.add_task("Expensive")
        attempt = store.start_attempt(task.id, agent="a", base_commit="0" * 40, branch_for=lambda n: f"b{n}")
        # The gateway refuses a call, then the orchestrator stops the attempt and the task fails.
        store.record_event("attempt.over_budget", task_id=task.id, attempt_id=attempt.id,
                           budget="task_tokens", spent=1200, limit=1000)
        store.finish_attempt(attempt.id, AttemptState.over_budget, "attempt.over_budget",
                             task_state=TaskState.failed, task_reason="over the task_tokens budget")
        assert notifier.pump() == 1
    assert receiver.messages() == [
        f"task {task.id} (Expensive): attempt {attempt.id} hit its task_tokens budget (spent 1200 of 1000)"]


def test_only_the_configured_events_are_sent(project):
    store = project.store
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url], events=["failed"]))
        notifier.pump()
        to_review(store, "not wanted")
        assert notifier.pump() == 0
        assert notifier.notify("watcher", "not wanted either") is None
    assert receiver.posts == [] and store.notifications() == []


def test_quiet_hours_hold_notifications_then_send_one_digest(project):
    store = project.store
    clock = Clock(datetime(2026, 11, 23, 23, 30))
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url], quiet_hours="22:00-07:00"), clock=clock)
        notifier.notify("watcher", "CI went red")
        notifier.notify("watcher", "CI is green again")
        assert notifier.pump() == 0
        clock.advance(6 * 3600)                       # 05:30: still quiet
        assert notifier.pump() == 0
        notifier.notify("watcher", "the disk is full", importance="critical")
        assert notifier.pump() == 1                   # critical wakes the owner anyway
        clock.advance(2 * 3600)                       # 07:30: quiet hours are over
        assert notifier.pump() == 2
        assert notifier.pump() == 0
    assert receiver.messages() == ["the disk is full", "- CI went red\n- CI is green again"]
    assert receiver.posts[1]["body"]["title"] == "claw digest: 2 update(s)"


def test_low_importance_is_batched_into_a_digest_every_n_minutes(project):
    store = project.store
    clock = Clock(datetime(2026, 11, 23, 12, 0))
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url], digest_minutes=10), clock=clock)
        notifier.notify("watcher", "landed one", importance="low")
        assert notifier.pump() == 0                   # the first digest period starts now
        notifier.notify("watcher", "needs you", importance="high")
        assert notifier.pump() == 1                   # not low: sent at once
        clock.advance(5 * 60)
        notifier.notify("watcher", "landed two", importance="low")
        assert notifier.pump() == 0
        clock.advance(5 * 60)
        assert notifier.pump() == 2
        clock.advance(60)
        notifier.notify("watcher", "landed three", importance="low")
        assert notifier.pump() == 0                   # the next digest is ten minutes after the last
    assert receiver.messages() == ["needs you", "- landed one\n- landed two"]


def test_a_failing_endpoint_keeps_notifications_and_retries_with_backoff(project):
    store = project.store
    clock = Clock(datetime(2026, 11, 23, 12, 0))
    with Receiver() as receiver:
        receiver.status = 500
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url]), clock=clock)
        notifier.notify("watcher", "first")
        notifier.notify("watcher", "second")
        assert notifier.pump() == 0
        assert len(receiver.posts) == 1               # it stops at the first failure
        first = store.notifications(pending=True)[0]
        assert first.attempts == 1 and first.error
        assert notifier.pump() == 0 and len(receiver.posts) == 1   # backing off: no new try yet
        receiver.status = 200
        clock.advance(5)
        assert notifier.pump() == 2
    assert receiver.messages() == ["first", "first", "second"]
    assert store.notifications(pending=True) == []


def test_quiet_hours_parse_and_wrap_past_midnight():
    window = parse_quiet_hours("22:00-07:00")
    assert window == (22 * 60, 7 * 60)
    assert in_quiet_hours(datetime(2026, 1, 1, 23, 59).timestamp(), window)
    assert in_quiet_hours(datetime(2026, 1, 1, 6, 59).timestamp(), window)
    assert not in_quiet_hours(datetime(2026, 1, 1, 7, 0).timestamp(), window)
    assert in_quiet_hours(datetime(2026, 1, 1, 13, 0).timestamp(), parse_quiet_hours("12:30-14:00"))
    for bad in ("22-07", "25:00-07:00", "10:00-10:00"):
        with pytest.raises(ValueError):
            parse_quiet_hours(bad)


def test_bad_notify_config_is_a_clear_error(project, repo):
    with pytest.raises(ClawError, match="apprise cannot use 'nosuchservice://...'"):
        Notifier(project.store, NotifyConfig(urls=["nosuchservice://x"]))
    write_config(repo, '[notify]\nquiet_hours = "late"\n')
    result = claw(repo, "status")
    assert result.returncode == 1 and "quiet_hours must look like '22:00-07:00'" in result.stderr
    assert "Traceback" not in result.stderr


def test_claw_notify_send_and_list(repo, project):
    with Receiver() as receiver:
        write_config(repo, f'[notify]\nurls = ["{receiver.json_url}"]\n')
        result = claw(repo, "notify", "send", "hello from claw", "--title", "test")
        assert result.returncode == 0, result.stderr
        assert receiver.posts[0]["body"]["message"] == "hello from claw"
        assert receiver.posts[0]["body"]["title"] == "test"
    project.store.add_notification(Notification("watcher", "pending one"))
    listed = json.loads(claw(repo, "notify", "list", "--pending", "--json").stdout)
    assert [n["summary"] for n in listed] == ["pending one"]
    write_config(repo, "")
    result = claw(repo, "notify", "send", "x")
    assert result.returncode == 1 and "no [notify] urls" in result.stderr
