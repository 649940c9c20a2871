"""The merge step: land approved attempts on the target branch, one way only.

Rebase onto the target's tip in an integration worktree, re-run the checks there, then move the
target with compare-and-swap (or fast-forward the person's checkout when the target is checked
out and clean). A conflict or a red check leaves the target untouched and bounces the attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import git
from .checks import all_passed, describe_failure, run_checks
from .models import Attempt, AttemptState, TaskState
from .procs import ChildGroups
from .project import Project
from .workspace import WorkspacePool

INTEGRATION = "integration"
CAS_RETRIES = 3


@dataclass
class LandResult:
    task_id: int
    outcome: str               # "merged", "bounced" or "waiting"
    reason: str = ""
    commit: str | None = None

    def describe(self) -> str:
        if self.outcome == "merged":
            return f"task {self.task_id}: landed as {self.commit[:10]}"
        if self.outcome == "bounced":
            return f"task {self.task_id}: bounced: {self.reason}"
        return f"merge waits: {self.reason}"


class MergeQueue:
    def __init__(self, project: Project, pool: WorkspacePool | None = None,
                 on_event: Callable[[LandResult], None] | None = None) -> None:
        self.project = project
        self.store = project.store
        self.config = project.config
        self.pool = pool or WorkspacePool(project)
        self.on_event = on_event or (lambda result: None)

    def approved(self) -> list[Attempt]:
        tasks = self.store.list_tasks([TaskState.approved])
        tasks.sort(key=lambda t: (-t.priority, -t.importance.rank, t.id))
        found = []
        for task in tasks:
            attempt = self.store.latest_attempt(task.id)
            if attempt and attempt.state == AttemptState.approved:
                found.append(attempt)
        return found

    def land_all(self) -> list[LandResult]:
        results = []
        for attempt in self.approved():
            result = self.land(attempt)
            results.append(result)
            self.on_event(result)
            if result.outcome == "waiting":
                break
        return results

    def _target_checkout_blocked(self, target: str) -> str | None:
        checkout = git.worktree_of_branch(self.project.root, target)
        if checkout is not None and git.is_dirty(checkout):
            return (f"the target branch '{target}' is checked out at {checkout} with uncommitted "
                    "changes; merge waits (commit or stash them, then run `claw merge`)")
        return None

    def _integration_worktree(self, tip: str) -> Path:
        path = self.project.worktrees_dir / INTEGRATION
        known = {info.path.resolve() for info in git.worktrees(self.project.root)}
        if path.resolve() not in known:
            if path.exists():
                git.remove_worktree(self.project.root, path)
            self.project.worktrees_dir.mkdir(parents=True, exist_ok=True)
            git.add_detached_worktree(self.project.root, path, tip)
        return path

    def land(self, attempt: Attempt) -> LandResult:
        task = self.store.get_task(attempt.task_id)
        target = self.config.fleet.target
        for _ in range(CAS_RETRIES):
            blocked = self._target_checkout_blocked(target)
            if blocked:
                return LandResult(task.id, "waiting", blocked)
            tip = self.project.target_tip()
            integration = self._integration_worktree(tip)
            conflicts = git.rebase_onto(integration, attempt.head_commit, attempt.base_commit, tip)
            if conflicts:
                return self._bounce(attempt, "conflicts with the target branch in: " + ", ".join(conflicts))
            new_head = git.rev(integration, "HEAD")
            commands = [*self.config.checks.commands, *task.checks]
            # The same tree passed these checks in the attempt; re-run only when rebased.
            if commands and tip != attempt.base_commit:
                log_dir = self.project.attempt_dir(attempt.id) / "checks"
                results = run_checks(commands, cwd=integration, log_dir=log_dir,
                                     timeout=self.config.checks.timeout, label="merge",
                                     children=ChildGroups(self.project.attempt_dir(attempt.id) / "children"))
                if not all_passed(results):
                    failure = describe_failure(results)
                    return self._bounce(attempt, "checks failed after rebase onto the target: " + failure)
            with git.repo_lock(self.project.root):
                if git.branch_tip(self.project.root, target) != tip:
                    continue  # the target moved while we checked: rebase again
                blocked = self._target_checkout_blocked(target)
                if blocked:
                    return LandResult(task.id, "waiting", blocked)
                checkout = git.worktree_of_branch(self.project.root, target)
                if checkout is not None:
                    try:
                        git.fast_forward_checkout(checkout, new_head)
                    except git.GitError as error:  # e.g. an untracked file of theirs is in the way
                        return LandResult(task.id, "waiting", f"cannot update your checkout of '{target}' "
                                                              f"at {checkout}: {error}")
                else:
                    git.update_ref(self.project.root, target, new_head, tip,
                                   f"claw: land task {task.id}")
            self.store.finish_attempt(attempt.id, AttemptState.merged, "attempt.merged",
                                      task_state=TaskState.merged, task_reason=f"landed as {new_head[:10]}",
                                      head_commit=new_head)
            self._clean_up(attempt, delete_branch=True)
            return LandResult(task.id, "merged", commit=new_head)
        return LandResult(task.id, "waiting", f"the target branch kept moving; tried {CAS_RETRIES} times")

    def _bounce(self, attempt: Attempt, reason: str) -> LandResult:
        self.store.finish_attempt(attempt.id, AttemptState.bounced, "attempt.bounced",
                                  task_state=TaskState.failed, task_reason=reason, reason=reason)
        self._clean_up(attempt, delete_branch=False)  # the branch keeps the work for a retry
        return LandResult(attempt.task_id, "bounced", reason)

    def _clean_up(self, attempt: Attempt, delete_branch: bool) -> None:
        if attempt.worktree:
            self.pool.release(Path(attempt.worktree), recycle_at=git.branch_tip(self.project.root,
                                                                                 self.config.fleet.target))
        if delete_branch:
            git.delete_branch(self.project.root, attempt.branch)
