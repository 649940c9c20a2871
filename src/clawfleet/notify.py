"""Outgoing notifications: short messages to the owner through apprise URLs.

Anything can queue one with `Notifier.notify(kind, summary)`; the daemon also reads the store's
events as they come (a cursor over the events table) and turns the ones a person cares about
into notifications: an attempt waits for review, a task lands, fails or cannot land, an attempt
hits its budget. Notifications are rows in the store until delivered, so a crash loses none.
Quiet hours hold them (critical ones excepted) and send what piled up as one digest when they
end; low-importance ones can be batched into a digest every N minutes.

    notifier = Notifier(project.store, project.config.notify)
    notifier.notify("watcher", "CI went red", importance="high")
    notifier.pump()   # read new events, deliver what is due
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from . import redact
from .config import NotifyConfig, parse_quiet_hours
from .errors import ClawError
from .models import AttemptState, Importance, Notification
from .store import Store

CURSOR_KEY = "notify.cursor"
DIGEST_KEY = "notify.last_digest"
MAX_BACKOFF_S = 300.0
SUMMARY_CHARS = 300

Sender = Callable[[str, str], bool]
"""Deliver (title, body) to every URL; True when it went through."""


def in_quiet_hours(at: float, window: tuple[int, int] | None) -> bool:
    if window is None:
        return False
    local = datetime.fromtimestamp(at)
    minute = local.hour * 60 + local.minute
    start, end = window
    return start <= minute < end if start < end else minute >= start or minute < end


def apprise_sender(urls: Sequence[str]) -> Sender:
    """A sender for apprise URLs; a URL apprise cannot read is a clear error at start."""
    import apprise

    hub = apprise.Apprise()
    for url in urls:
        if not hub.add(url):
            shown = url.split("://", 1)[0] + "://..." if "://" in url else url[:20]
            raise ClawError(f"[notify] urls: apprise cannot use {shown!r}",
                            hint="see https://github.com/caronc/apprise/wiki for the URL of each service")

    def send(title: str, body: str) -> bool:
        return bool(hub.notify(title=title, body=body))
    return send


# -- which events a person hears about -----------------------------------------------------

def category_of(kind: str) -> str | None:
    """The [notify] events name of an event kind, or None for events nobody is told about."""
    if "budget" in kind:
        return "budget"  # the gateway's refusals and whatever stops an attempt over budget
    if kind.startswith("security.") or kind == "workspace.quarantined":
        return "security"  # an agent reached past what a task allows (refwatch.py, git.py)
    return {"task.review": "review", "review.ai": "review", "review.ai_failed": "review",
            "task.merged": "merged", "task.resolved": "merged", "task.failed": "failed",
            "attempt.bounced": "bounced", "task.blocked": "blocked"}.get(kind)


def notification_for(event: dict, store: Store) -> Notification | None:
    """A short notification for one event row, or None when it is not worth one."""
    category = category_of(event["kind"])
    if category is None:
        return None
    data, task_id = event["data"], event["task_id"]
    if event["kind"] == "task.review" and data.get("ai_review"):
        return None  # the AI reviewer looks first; told only if it leaves the task to a person
    if category == "budget" and "new" in data:
        return None  # the attempt stopped over budget: the gateway's refusal was told already
    if category == "failed" and event["attempt_id"] is not None and \
            store.get_attempt(event["attempt_id"]).state == AttemptState.over_budget:
        return None  # likewise: its task fails because of the budget refusal already told
    task = store.get_task(task_id) if task_id is not None else None
    name = f"task {task_id} ({task.title})" if task else "the fleet"
    reason = (data.get("reason") or "").splitlines()[0] if data.get("reason") else ""
    importance = task.importance if task else Importance.normal
    if category == "security":
        summary = data.get("summary") or f"attempt {event['attempt_id']}: {data.get('reason') or event['kind']}"
        return Notification(kind=category, summary=_short(f"security: {summary}"),
                            importance=Importance.critical, event_id=event["id"], at=event["at"])
    if category == "review":
        summary = f"{name} needs your review" + (f": {reason}" if reason else "")
    elif category == "merged":
        summary, importance = f"{name} landed" + (f" ({reason})" if reason else ""), Importance.low
    elif category == "failed":
        summary = f"{name} failed" + (f": {reason}" if reason else "")
        importance = max(importance, Importance.normal, key=lambda i: i.rank)
    elif category == "blocked":
        summary = f"{name} is blocked" + (f": {reason}" if reason else "")
    elif category == "bounced":
        summary = f"{name} could not land" + (f": {reason}" if reason else "")
    else:
        spent, limit = data.get("spent"), data.get("limit")
        budget = f"{data['budget']} budget" if data.get("budget") else "budget"
        summary = (f"{name}: attempt {event['attempt_id']} hit its {budget}"
                   + (f" (spent {spent:g} of {limit:g})" if isinstance(spent, (int, float))
                      and isinstance(limit, (int, float)) else ""))
        importance = Importance.high
    return Notification(kind=category, summary=_short(summary), importance=importance,
                        event_id=event["id"], at=event["at"])


def _short(text: str) -> str:
    text = redact.text(text)  # before cutting: half a secret would no longer be recognised
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 1] + "…"


def wanted(config: NotifyConfig, kind: str) -> bool:
    """Whether notifications of `kind` are sent at all (URLs configured, kind among `events`;
    security alarms whatever `events` says)."""
    return bool(config.urls) and (kind in config.events or kind == "security")


# -- the notifier ---------------------------------------------------------------------------

class Notifier:
    """Queue, hold and deliver notifications. `send` and `clock` are injectable for tests."""

    def __init__(self, store: Store, config: NotifyConfig, *, send: Sender | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.enabled = bool(config.urls) or send is not None
        self._send = send or (apprise_sender(config.urls) if config.urls else None)
        self._quiet = parse_quiet_hours(config.quiet_hours) if config.quiet_hours else None
        self._failures = 0
        self._retry_at = 0.0

    def notify(self, kind: str, summary: str, importance: Importance | str = Importance.normal) -> int | None:
        """Queue a notification; the next `deliver()` sends it (or holds it). None when not wanted."""
        if not self.wants(kind):
            return None
        return self.store.add_notification(Notification(kind, _short(summary), Importance(importance),
                                                        at=self.clock()))

    def wants(self, kind: str) -> bool:
        return self.enabled and (kind in self.config.events or kind == "security")

    def pump(self) -> int:
        self.read_events()
        return self.deliver()

    def read_events(self) -> int:
        """Turn the events since the last look into notifications; return how many were queued.

        The first look starts at the newest event: the history before the daemon is not news.
        """
        cursor = self.store.daemon_state(CURSOR_KEY)
        if cursor is None:
            self.store.set_daemon_state(CURSOR_KEY, self.store.last_event_id())
            return 0
        events = self.store.events(after_id=cursor)
        if not events:
            return 0
        items = [n for n in (notification_for(e, self.store) for e in events)
                 if n is not None and self.wants(n.kind)]
        if not self.store.notifications_from_events(items, CURSOR_KEY, events[-1]["id"], expect=cursor):
            return 0
        return len(items)

    def deliver(self) -> int:
        """Send what is due now; return how many notifications went out."""
        now = self.clock()
        if self._send is None or now < self._retry_at:
            return 0
        pending = self.store.notifications(pending=True)
        if not pending:
            return 0
        quiet_now = in_quiet_hours(now, self._quiet)
        now_items, digest_items = [], []
        for item in pending:
            if item.importance == Importance.critical:
                now_items.append(item)  # a critical one wakes the owner, quiet hours or not
            elif quiet_now:
                continue
            elif in_quiet_hours(item.at, self._quiet) or self._batched(item):
                digest_items.append(item)
            else:
                now_items.append(item)
        sent = 0
        for item in now_items:
            delivered = self._deliver([item], f"claw: {item.summary[:80]}", item.summary)
            if not delivered:
                return sent  # the service is down: back off rather than fail every one now
            sent += delivered
        if digest_items and self._digest_due(now, digest_items):
            lines = "\n".join(f"- {item.summary}" for item in digest_items)
            sent += self._deliver(digest_items, f"claw digest: {len(digest_items)} update(s)", lines)
            self.store.set_daemon_state(DIGEST_KEY, now)
        return sent

    def _batched(self, item: Notification) -> bool:
        return self.config.digest_minutes > 0 and item.importance in self.config.digest_importance

    def _digest_due(self, now: float, items: list[Notification]) -> bool:
        if any(in_quiet_hours(item.at, self._quiet) for item in items):
            return True  # quiet hours just ended: what piled up goes now
        last = self.store.daemon_state(DIGEST_KEY)
        if last is None:
            self.store.set_daemon_state(DIGEST_KEY, now)  # the first period starts now
            return False
        return now - last >= self.config.digest_minutes * 60

    def _deliver(self, items: list[Notification], title: str, body: str) -> int:
        ids = [item.id for item in items]
        title, body = redact.text(title), redact.text(body)  # whatever queued them, nothing leaves
        try:
            ok = self._send(title, body)
            error = None if ok else "the notification service refused it (see the daemon's log)"
        except Exception as exc:  # apprise plugins raise what their libraries raise
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            self._failures += 1
            self._retry_at = self.clock() + min(MAX_BACKOFF_S, 2.0 ** self._failures)
            self.store.mark_notifications(ids, error=error)
            return 0
        self._failures, self._retry_at = 0, 0.0
        self.store.mark_notifications(ids, sent_at=self.clock())
        return len(items)
