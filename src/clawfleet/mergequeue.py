"""The merge step: land approved attempts on the target branch, one way only.

Rebase onto the target's tip in an integration worktree, re-run the checks there, then move the
target with compare-and-swap (or fast-forward the person's checkout when the target is checked
out and clean). A conflict or a red check leaves the target untouched and bounces the attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import git, private
from .checks import all_passed, describe_failure, run_checks
from .containment import contain, workspace_reach
from .sandbox import SandboxPolicy
from .sandbox import resolve as resolve_sandbox
from .models import Attempt, AttemptState, TaskState
from .procs import ChildGroups
from .project import Project
from .review import approved_by_a_person, changes_policy, policy_files_of
from .workspace import WorkspacePool, prepare_integration

INTEGRATION = "integration"
RESOLVE_BODY = """\
Task {task.id} ("{task.title}") was approved, but its changes no longer apply to the target
branch: they conflict with what landed meanwhile in

{files}

Its work is on branch `{branch}` (commits {base}..{head}). Bring those changes onto your
worktree (for example `git cherry-pick {base}..{head}`, then resolve the conflicts), keeping both
what the target branch has now and what task {task.id} meant to do.

The original task:

{task.body}
"""
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
        self._sandbox: tuple[SandboxPolicy | None] | None = None

    def use_sandbox(self, policy: SandboxPolicy | None) -> None:
        """The run's sandbox policy (resolved once, with its warning, by the orchestrator)."""
        self._sandbox = (policy,)

    @property
    def sandbox(self) -> SandboxPolicy | None:
        if self._sandbox is None:
            self._sandbox = (resolve_sandbox(self.config.sandbox, warn=lambda message: None),)
        return self._sandbox[0]

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
        """Land every approved attempt, `merge.batch_size` at a time, most urgent first."""
        results: list[LandResult] = []
        size = self.config.merge.batch_size
        while True:
            batch = self.approved()[:size]
            if not batch:
                return results
            landed = self.land_batch(batch)
            results += landed
            for result in landed:
                self.on_event(result)
            if any(r.outcome == "waiting" for r in landed):
                return results

    def land(self, attempt: Attempt) -> LandResult:
        return self.land_batch([attempt])[0]

    def _target_checkout_blocked(self, target: str) -> str | None:
        checkout = git.worktree_of_branch(self.project.root, target)
        if checkout is not None and git.is_dirty(checkout, repo=self.project.root):
            return (f"the target branch '{target}' is checked out at {checkout} with uncommitted "
                    "changes: commit or stash them, then run `claw merge`")
        return None

    def _integration_worktree(self, tip: str) -> Path:
        path = self.project.worktrees_dir / INTEGRATION
        known = {info.path.resolve() for info in git.worktrees(self.project.root)}
        try:
            git.verify_worktree(path, self.project.root)
        except git.WorktreeTampered as error:  # by the code its checks ran: made again
            self.store.record_event("security.worktree_tampered", worktree=str(path), reason=str(error))
            known = set()
        except git.GitError:
            pass
        if path.resolve() not in known:
            if path.exists():
                git.remove_worktree(self.project.root, path)
            self.project.worktrees_dir.mkdir(parents=True, exist_ok=True)
            git.add_detached_worktree(self.project.root, path, tip)
        return path

    def land_batch(self, attempts: list[Attempt]) -> list[LandResult]:
        """Stack the attempts on the target's tip, check once, move the target once.

        A conflicting attempt is bounced (and a task to resolve it queued) and the rest go on;
        when the stacked checks fail, the batch is split in halves and each half tried on its
        own (bisection), so one culprit costs about log2(K) extra check runs, not K.
        """
        unapproved = [(a, files) for a in attempts if (files := self._policy_without_a_person(a))]
        if unapproved:
            refused = [self._bounce(a, f"{changes_policy(files)}, and no person approved it: nothing "
                                       "landed (its branch keeps the work)") for a, files in unapproved]
            rest = [a for a in attempts if a.id not in {b.id for b, _ in unapproved}]
            return refused + (self.land_batch(rest) if rest else [])
        target = self.config.fleet.target
        for _ in range(CAS_RETRIES):
            blocked = self._target_checkout_blocked(target)
            if blocked:
                return [LandResult(a.task_id, "waiting", blocked) for a in attempts]
            tip = self.project.target_tip()
            integration = self._integration_worktree(tip)
            results: list[LandResult] = []
            stacked: list[tuple[Attempt, str]] = []
            top = tip
            for attempt in attempts:
                conflicts = git.rebase_onto(integration, attempt.head_commit, attempt.base_commit, top,
                                            repo=self.project.root)
                if conflicts:
                    results.append(self._bounce_conflict(attempt, conflicts))
                    continue
                top = git.rev(integration, "HEAD")  # checked: the merge queue's own worktree
                stacked.append((attempt, top))
            if not stacked:
                return results
            git.git("switch", "--quiet", "--detach", "--discard-changes", top, cwd=integration)
            failure = self._check(integration, stacked, tip)
            if failure is not None:
                if len(stacked) == 1:
                    return results + [self._bounce(stacked[0][0], "checks failed after rebase onto the "
                                                                   "target: " + failure)]
                half = len(stacked) // 2
                first = self.land_batch([a for a, _ in stacked[:half]])
                if any(r.outcome == "waiting" for r in first):
                    return results + first
                return results + first + self.land_batch([a for a, _ in stacked[half:]])
            moved = self._move_target(tip, top, stacked)
            if moved is None:
                continue  # the target moved while we checked: stack again on the new tip
            if moved:
                return results + [LandResult(a.task_id, "waiting", moved) for a, _ in stacked]
            for attempt, commit in stacked:
                self.store.finish_attempt(attempt.id, AttemptState.merged, "attempt.merged",
                                          task_state=TaskState.merged,
                                          task_reason=f"landed as {commit[:10]}", head_commit=commit)
                self._clean_up(attempt, delete_branch=True)
                results.append(LandResult(attempt.task_id, "merged", commit=commit))
            return results
        return [LandResult(a.task_id, "waiting", f"the target branch kept moving; tried {CAS_RETRIES} times")
                for a in attempts]

    def _policy_without_a_person(self, attempt: Attempt) -> list[str]:
        """The policy files the attempt changes when no person approved it ([] otherwise): the
        last word on them, whatever path approved it (review.decide keeps them from policies
        and the AI reviewer; this catches any other)."""
        files = policy_files_of(self.project, attempt)
        return files if files and not approved_by_a_person(self.store, attempt) else []

    def _check(self, integration: Path, stacked: list[tuple[Attempt, str]], tip: str) -> str | None:
        """Run the checks on the stacked result; None when they pass (or need not run)."""
        tasks = [self.store.get_task(a.task_id) for a, _ in stacked]
        commands = [*self.config.checks.commands, *(c for t in tasks for c in t.checks)]
        # A single attempt whose base is still the tip is the very tree its own checks passed.
        alone = stacked[0][0]
        if not commands or (len(stacked) == 1 and alone.base_commit == tip and alone.checks_passed):
            return None
        lead = stacked[-1][0]
        children = ChildGroups(self.project.attempt_dir(lead.id) / "children")
        env, setup_failure = prepare_integration(self.project, integration, stacked[-1][1], children,
                                                 self.sandbox)
        if setup_failure:
            return setup_failure
        # The checks run the agents' code: in the same sandbox as the agents.
        reach = workspace_reach(integration, self.project.root, git.common_dir(self.project.root), env)
        results = run_checks(commands, cwd=integration, timeout=self.config.checks.timeout,
                             log_dir=self.project.attempt_dir(lead.id) / "checks",
                             label=f"merge-batch{len(stacked)}", children=children, env=env,
                             contained=lambda args, full_env: contain(self.sandbox, args, full_env, reach))
        return None if all_passed(results) else describe_failure(results)

    def _move_target(self, tip: str, top: str, stacked: list[tuple[Attempt, str]]) -> str | None | bool:
        """Move the target from `tip` to `top`: False when done, None when it moved meanwhile,
        or the reason (a str) why it must wait."""
        target = self.config.fleet.target
        with git.repo_lock(self.project.root):
            if git.branch_tip(self.project.root, target) != tip:
                return None
            blocked = self._target_checkout_blocked(target)
            if blocked:
                return blocked
            checkout = git.worktree_of_branch(self.project.root, target)
            if checkout is not None:
                landing = git.changed_files(self.project.root, tip, top)
                folders = {str(parent) for p in landing for parent in Path(p).parents} - {"."}
                new_folders = sorted(f for f in folders if not (checkout / f).exists())
                try:
                    git.fast_forward_checkout(checkout, top, repo=self.project.root)
                except git.GitError as error:  # e.g. an untracked file of theirs is in the way
                    return f"cannot update your checkout of '{target}' at {checkout}: {error}"
                private.as_the_person_would(checkout, landing, new_folders)
            else:
                tasks = ", ".join(str(a.task_id) for a, _ in stacked)
                git.update_ref(self.project.root, target, top, tip, f"{git.LANDING} task(s) {tasks}")
        return False

    def _bounce_conflict(self, attempt: Attempt, files: list[str]) -> LandResult:
        reason = "conflicts with the target branch in: " + ", ".join(files)
        if not self.config.merge.resolve_conflicts:
            return self._bounce(attempt, reason)
        task = self.store.get_task(attempt.task_id)
        resolve = self.store.add_task(
            f"Resolve conflict: {task.title}"[:200], kind="fix", agent=task.agent,
            priority=task.priority + 1, importance=task.importance, footprint=files,
            checks=task.checks, body=RESOLVE_BODY.format(
                task=task, files="\n".join(f"- `{f}`" for f in files), branch=attempt.branch,
                base=attempt.base_commit, head=attempt.head_commit))
        return self._bounce(attempt, f"{reason}; task {resolve.id} queued to resolve it")

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
