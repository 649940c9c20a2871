"""Conflict radar: predict, while attempts still run, which of them will collide at merge time.

Each live attempt's worktree is snapshotted as a dangling commit (a temporary index, so the
agent's worktree and index are never touched), then `git merge-tree --write-tree` merges each
snapshot with the target's tip and with every other snapshot, in memory. The latest scan is kept
in `.claw/run/radar.json` for `claw status`, `claw conflicts` and the scheduler.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from . import git
from .errors import GitError
from .models import AttemptState
from .project import Project

LIVE = (AttemptState.running, AttemptState.ready, AttemptState.approved)


@dataclass
class Collision:
    task: int
    attempt: int
    other_task: int | None        # None: the target branch
    other_attempt: int | None
    files: list[str]

    def describe(self, target: str) -> str:
        other = f"task {self.other_task}" if self.other_task else f"the target branch '{target}'"
        return f"task {self.task} will conflict with {other} in {', '.join(self.files[:5])}"


@dataclass
class RadarReport:
    at: float
    target_tip: str
    collisions: list[Collision] = field(default_factory=list)
    touched: dict[int, list[str]] = field(default_factory=dict)   # attempt id -> files changed

    def for_task(self, task_id: int) -> list[Collision]:
        return [c for c in self.collisions if task_id in (c.task, c.other_task)]


def report_path(project: Project) -> Path:
    return project.run_dir / "radar.json"


def scan(project: Project) -> RadarReport:
    """Snapshot every live attempt and predict collisions; save and return the report."""
    store = project.store
    tip = project.target_tip()
    heads: dict[int, tuple[int, str]] = {}   # attempt id -> (task id, commit)
    report = RadarReport(time.time(), tip)
    for attempt in store.attempts(states=LIVE):
        task = store.get_task(attempt.task_id)
        if store.latest_attempt(task.id).id != attempt.id:
            continue
        try:
            if attempt.state == AttemptState.running and attempt.worktree and Path(attempt.worktree).exists():
                head = git.snapshot_commit(Path(attempt.worktree), f"refs/heads/{attempt.branch}",
                                           repo=project.root)
            else:
                head = attempt.head_commit
        except GitError:
            continue  # being made or removed right now, or tampered with (quarantined when it ends)
        if not head:
            continue
        heads[attempt.id] = (task.id, head)
        report.touched[attempt.id] = git.changed_files(project.root, attempt.base_commit, head)
    for attempt_id, (task_id, head) in heads.items():
        files = git.merge_conflicts(project.root, tip, head)
        if files:
            report.collisions.append(Collision(task_id, attempt_id, None, None, files))
    for (a, (task_a, head_a)), (b, (task_b, head_b)) in combinations(sorted(heads.items()), 2):
        if not set(report.touched[a]) & set(report.touched[b]):
            continue  # disjoint changes cannot conflict: skip the merge
        files = git.merge_conflicts(project.root, head_a, head_b)
        if files:
            report.collisions.append(Collision(task_a, a, task_b, b, files))
    save(project, report)
    return report


def save(project: Project, report: RadarReport) -> None:
    path = report_path(project)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=1))
    tmp.replace(path)


def load(project: Project) -> RadarReport | None:
    try:
        data = json.loads(report_path(project).read_text())
    except (OSError, ValueError):
        return None
    return RadarReport(data["at"], data["target_tip"], [Collision(**c) for c in data["collisions"]],
                       {int(k): v for k, v in data["touched"].items()})
