"""Which queued tasks may start now, and why the others wait."""

from __future__ import annotations

from .models import Task, TaskState
from .store import Store


def waiting_reason(store: Store, task: Task) -> str | None:
    """Why a queued task cannot start yet (None: it can)."""
    unmet = [dep for dep in task.depends_on if store.get_task(dep).state != TaskState.merged]
    if unmet:
        return "waits for task " + ", ".join(str(d) for d in unmet) + " to land"
    return None


def runnable_tasks(store: Store, free_slots: int) -> list[Task]:
    """Queued tasks whose dependencies have landed, most urgent first, at most `free_slots`."""
    if free_slots <= 0:
        return []
    queued = [t for t in store.list_tasks([TaskState.queued]) if waiting_reason(store, t) is None]
    queued.sort(key=lambda t: (-t.priority, -t.importance.rank, t.id))
    return queued[:free_slots]
