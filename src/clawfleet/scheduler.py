"""Which queued tasks may start now, and why the others wait.

A task waits while a dependency has not landed, while it backs off after a crash or timeout,
while its footprint overlaps the footprint of a running task (two agents never edit the same code
at once) or of an approved one that has not landed yet (it would start from the base that one is
about to leave), while its agent has no free slot, or while the fleet has none. A best-of-N task
needs N free slots at once: its attempts run side by side, from the same base. A task's footprint
is what it declared with `--footprint`, or else what its last attempt touched (a prediction); a
task with neither is never held back by one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .config import Config
from .footprint import overlap
from .models import LANDED, AttemptState, Task, TaskState
from .store import Store


@dataclass
class Plan:
    start: list[Task] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)   # task id -> why it waits
    backing_off: bool = False                                # a retry starts by itself soon


class Scheduler:
    def __init__(self, store: Store, config: Config, *, files: Callable[[], Sequence[str]],
                 footprint_of: Callable[[Task], list[str]], respect_footprints: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.store = store
        self.config = config
        self.files = files
        self.footprint_of = footprint_of
        self.respect_footprints = respect_footprints

    def plan(self, slots: int) -> Plan:
        plan = Plan()
        busy: list[tuple[Task, list[str]]] | None = None  # running footprints, read when one matters
        per_agent: dict[str, int] = {}
        attempts = self.store.attempts(states=[AttemptState.running])
        for attempt in attempts:
            per_agent[attempt.agent] = per_agent.get(attempt.agent, 0) + 1
        free = slots - len(attempts)
        queued = self.store.list_tasks([TaskState.queued])
        queued.sort(key=lambda t: (-t.priority, -t.importance.rank, t.id))
        files: Sequence[str] | None = None
        now = self.clock()
        for task in queued:
            backoff = self._backoff_wait(task, now)
            plan.backing_off = plan.backing_off or backoff is not None
            reason = self._dependency_wait(task) or backoff
            if reason is None and self.respect_footprints:
                mine = self.footprint_of(task)
                if mine and busy is None:
                    # Approved work holds its footprint until it lands: a task started meanwhile
                    # would start from the old base and collide with it at merge.
                    busy = [(t, self.footprint_of(t))
                            for t in self.store.list_tasks([TaskState.running, TaskState.approved])]
                if mine and busy:
                    files = self.files() if files is None else files
                    reason = _overlap_wait(mine, busy, files)
            wanted = Counter(task.attempt_agents(self.config.fleet.default_agent))
            for agent, count in wanted.items():
                limit = self.config.fleet.agent_slots.get(agent)
                if reason is None and limit is not None and per_agent.get(agent, 0) + count > limit:
                    reason = f"agent '{agent}' has all its {limit} slot(s) busy"
            needed = sum(wanted.values())
            if reason is None and needed > slots:
                reason = f"best of {needed} needs {needed} slots; the fleet has {slots} (raise fleet.slots)"
            if reason is None and free < needed:
                reason = "waits for a free slot" if needed == 1 else f"waits for {needed} free slots (best of {needed})"
            if reason:
                plan.waiting[task.id] = reason
                continue
            plan.start.append(task)
            if busy is not None:
                busy.append((task, self.footprint_of(task)))
            for agent, count in wanted.items():
                per_agent[agent] = per_agent.get(agent, 0) + count
            free -= needed
        return plan

    def _backoff_wait(self, task: Task, now: float) -> str | None:
        """A task retried after a crash, timeout or stall waits a little longer each time."""
        attempts = self.store.attempts(task_id=task.id)
        failed = [a for a in attempts if a.state in (AttemptState.crashed, AttemptState.timed_out,
                                                     AttemptState.stalled)]
        if not failed or attempts[-1] is not failed[-1] or not self.config.fleet.retry_backoff:
            return None
        delay = self.config.fleet.retry_backoff * 2 ** (len(failed) - 1)
        ready_at = (failed[-1].finished_at or failed[-1].started_at) + delay
        if ready_at > now:
            return f"retry {len(attempts) + 1} starts in {ready_at - now:.0f} s (backoff)"
        return None

    def _dependency_wait(self, task: Task) -> str | None:
        unmet = [dep for dep in task.depends_on if self.store.get_task(dep).state not in LANDED]
        if unmet:
            return "waits for task " + ", ".join(str(d) for d in unmet) + " to land"
        return None


def _overlap_wait(mine: list[str], busy: list[tuple[Task, list[str]]], files: Sequence[str]) -> str | None:
    for other, theirs in busy:
        shared = overlap(mine, theirs, files)
        if shared:
            shown = ", ".join(shared[:3]) + (f" and {len(shared) - 3} more" if len(shared) > 3 else "")
            if other.state == TaskState.approved:
                return f"footprint overlaps task {other.id}, approved and waiting to land ({shown})"
            return f"footprint overlaps running task {other.id} ({shown})"
    return None


def for_project(project, respect_footprints: bool | None = None) -> Scheduler:
    """A scheduler that reads the repository: tracked files at the target's tip, and the files
    a task's last attempt touched as its predicted footprint."""
    from . import git, radar

    touched: dict[int, list[str]] = {}
    files_at: dict[str, list[str]] = {}

    def files() -> list[str]:
        tip = project.target_tip()
        if tip not in files_at:
            files_at.clear()
            files_at[tip] = git.tracked_paths(project.root, tip)
        return files_at[tip]

    def footprint_of(task: Task) -> list[str]:
        attempt = project.store.latest_attempt(task.id)
        if task.state == TaskState.running and attempt is not None:
            # What the agent has really touched so far counts too (from the last radar scan).
            report = radar.load(project)
            live = report.touched.get(attempt.id, []) if report else []
            return sorted({*task.footprint, *live})
        if task.footprint and task.state != TaskState.approved:
            return task.footprint
        if attempt is None or not attempt.head_commit or attempt.head_commit == attempt.base_commit:
            return []
        if attempt.id not in touched:
            touched[attempt.id] = [s.path for s in git.diff_stats(project.root, attempt.base_commit,
                                                                   attempt.head_commit)]
        # Approved: what it declared and what it really changed, both about to land.
        return sorted({*task.footprint, *touched[attempt.id]}) if task.footprint else touched[attempt.id]

    respect = project.config.fleet.respect_footprints if respect_footprints is None else respect_footprints
    return Scheduler(project.store, project.config, files=files, footprint_of=footprint_of,
                     respect_footprints=respect)
