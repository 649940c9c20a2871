"""The board: one snapshot of the fleet, read from the store, for `claw status` and `claw ui`.

A row per task (its latest attempt's agent, phase, time, tokens and cost, and why it is where it
is), the fleet's totals (slots busy, tokens and cost in the last hour and today) and the latest
events as one line each. Reading only: taking a snapshot never writes to the store.

    board = snapshot(project)
    for row in board.rows: ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .models import AttemptState, Task, TaskState
from .project import Project
from .runner import read_progress

CLOSED = (TaskState.merged, TaskState.resolved, TaskState.cancelled, TaskState.rejected)


@dataclass
class TaskRow:
    id: int
    title: str
    agent: str
    state: str
    phase: str | None = None        # what a running attempt is doing (agent, checks, ...)
    elapsed_s: float | None = None
    tokens: int = 0                 # as the agent counts them, or as the gateway metered, the larger
    cost: float | None = None       # metered by the gateway; None without it
    note: str = ""                  # why it waits, or the reason for its state
    ai_review: str | None = None
    attempt_id: int | None = None


@dataclass
class Totals:
    slots: int
    running: int
    queued: int
    in_review: int
    tokens_last_hour: int
    cost_today: float


@dataclass
class Board:
    rows: list[TaskRow]
    totals: Totals
    events: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)   # the radar's, for tasks still open
    at: float = 0.0


def conflicts_ahead(project: Project) -> list[str]:
    """The conflict radar's last report, for the tasks that are still running or waiting to land."""
    from . import radar

    report = radar.load(project)
    if report is None:
        return []
    open_tasks = {t.id for t in project.store.list_tasks([TaskState.running, TaskState.review, TaskState.approved])}
    return [c.describe(project.config.fleet.target) for c in report.collisions if c.task in open_tasks]


def waiting_reasons(project: Project) -> dict[int, str]:
    """Why each queued task waits, as the scheduler sees it now."""
    from .scheduler import for_project

    return for_project(project).plan(project.config.fleet.slots).waiting


def still_waiting(project: Project) -> list[str]:
    """One line per task that could not start (blocked, or waiting for a dependency), and why:
    what a run that ends says, so nothing waits silently. (A waiting merge says so as it waits.)"""
    tasks = project.store.list_tasks([TaskState.queued, TaskState.blocked])
    waiting = waiting_reasons(project) if any(t.state == TaskState.queued for t in tasks) else {}
    lines = []
    for task in tasks:
        if task.state == TaskState.blocked:
            deps = task.reason or ""
            retry = " ".join(f"`claw retry {d}`" for d in task.depends_on if f"task {d} " in deps)
            lines.append(f"task {task.id} is blocked: {deps}" + (f" ({retry} unblocks it)" if retry else ""))
        elif task.state == TaskState.queued and waiting.get(task.id):
            lines.append(f"task {task.id} {waiting[task.id]}")
    return lines


def task_rows(project: Project, tasks: list[Task], now: float | None = None) -> list[TaskRow]:
    now = time.time() if now is None else now
    waiting = waiting_reasons(project) if any(t.state == TaskState.queued for t in tasks) else {}
    rows = []
    for task in tasks:
        attempt = project.store.latest_attempt(task.id)
        row = TaskRow(task.id, task.title, attempt.agent if attempt else task.agent or project.config.fleet.default_agent,
                      str(task.state), note=task.reason or "")
        if task.state == TaskState.queued:
            row.note = waiting.get(task.id) or row.note
        elif task.state == TaskState.approved and task.merge_wait:
            row.note = f"merge waits: {task.merge_wait}"
        if task.resolves:
            row.note = f"resolves task {task.resolves}" + (f" · {row.note}" if row.note else "")
        if task.best_of > 1:
            row.agent = f"{'+'.join(dict.fromkeys(task.agents)) or row.agent} ×{task.best_of}"
        if attempt:
            row.attempt_id, row.ai_review = attempt.id, attempt.ai_review
            if task.state != TaskState.queued:  # queued again: the old attempt's time is not this one's
                row.elapsed_s = (attempt.finished_at or now) - attempt.started_at
            metered, dollars = project.store.llm_spend(attempt_id=attempt.id)
            row.tokens = max(attempt.tokens, metered)
            row.cost = dollars if metered or dollars else None
            if task.state == TaskState.running:
                row.phase = read_progress(project.attempt_dir(attempt.id)).get("phase")
        rows.append(row)
    return rows


def describe_event(event: dict) -> str:
    """One line for an event row: when, which task, what happened and why."""
    data = event["data"] or {}
    where = f"task {event['task_id']}" if event["task_id"] is not None else "fleet"
    detail = data.get("reason") or data.get("new") or ""
    detail = str(detail).splitlines()[0][:100] if detail else ""
    return (f"{time.strftime('%H:%M:%S', time.localtime(event['at']))}  {where}: {event['kind']}"
            + (f" ({detail})" if detail else ""))


def snapshot(project: Project, *, closed: bool = False, events: int = 12, now: float | None = None) -> Board:
    now = time.time() if now is None else now
    store = project.store
    tasks = store.list_tasks()
    shown = tasks if closed else [t for t in tasks if t.state not in CLOSED]
    states = [t.state for t in tasks]
    from .llm.meter import day_start

    # The gateway's count, or the agents' own reports where they are larger (no gateway).
    metered_hour, _ = store.llm_spend(since=now - 3600)
    reported_hour = sum(a.tokens for a in store.attempts() if (a.finished_at or now) >= now - 3600)
    hour_tokens = max(metered_hour, reported_hour)
    _, day_cost = store.llm_spend(since=day_start(now))
    totals = Totals(slots=project.config.fleet.slots, running=len(store.attempts(states=[AttemptState.running])),
                    queued=states.count(TaskState.queued), in_review=states.count(TaskState.review),
                    tokens_last_hour=hour_tokens, cost_today=day_cost)
    recent = store.events(after_id=max(store.last_event_id() - events, 0))[-events:] if events else []
    return Board(task_rows(project, shown, now), totals, [describe_event(e) for e in reversed(recent)],
                 conflicts_ahead(project), now)
