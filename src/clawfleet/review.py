"""Review: what happens to a finished attempt, by policy or by a person's decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import ClawError
from .models import Attempt, AttemptState, Task, TaskState
from .project import Project
from .risk import Risk
from .runner import AttemptStatus
from .store import Store
from .workspace import WorkspacePool

# A stall is most often a lost connection to the model: worth another try, as a crash is.
RETRYABLE = (AttemptState.crashed, AttemptState.timed_out, AttemptState.stalled)


@dataclass
class Decision:
    task_state: TaskState
    reason: str | None = None
    feedback: str | None = None
    auto_approved: bool = False
    ai_review: bool = False

    @property
    def attempt_state(self) -> AttemptState | None:
        """The state the attempt ends in with this decision (None: its run's outcome). Written
        with the task's in one transaction: an approved task always has an approved attempt,
        which is what the merge queue lands."""
        return AttemptState.approved if self.auto_approved else None


def decide(task: Task, status: AttemptStatus, attempts_so_far: int, config: Config,
           risk: Risk | None = None) -> Decision:
    """Where a task goes once an attempt has ended with `status` (and its diff scored `risk`)."""
    outcome = status.outcome
    if outcome == AttemptState.ready and risk is not None and risk.policy_files:
        # Whatever its importance or score: the AI reviewer may comment, a person decides.
        needs = f"a person must approve: {changes_policy(risk.policy_files)}"
        ai_limit = config.review.ai_max_risk.get(task.importance)
        if config.review.ai_reviewer and ai_limit is not None and risk.score <= ai_limit:
            return Decision(TaskState.review, f"{needs} (the AI reviewer comments first)", ai_review=True)
        return Decision(TaskState.review, f"{needs}; {risk.describe()}")
    if outcome == AttemptState.ready:
        if task.importance in config.review.auto_approve:
            return Decision(TaskState.approved, "auto-approved: checks passed and importance is "
                                                f"{task.importance}", auto_approved=True)
        limit = config.review.auto_max_risk.get(task.importance)
        if risk is not None and limit is not None and risk.score <= limit:
            return Decision(TaskState.approved, f"auto-approved: {risk.describe()} <= {limit} for "
                                                f"{task.importance} tasks", auto_approved=True)
        ai_limit = config.review.ai_max_risk.get(task.importance)
        if risk is not None and config.review.ai_reviewer and ai_limit is not None and risk.score <= ai_limit:
            return Decision(TaskState.review, f"for the AI reviewer: {risk.describe()}", ai_review=True)
        return Decision(TaskState.review, "ready for review" + (f": {risk.describe()}" if risk else ""))
    if outcome == AttemptState.checks_failed and config.checks.on_failure == "review":
        return Decision(TaskState.review, status.reason)
    if outcome in RETRYABLE and attempts_so_far < config.fleet.max_attempts:
        what = outcome.replace("_", " ")
        said = (status.reason or "").removeprefix(f"{what}: ")   # a stall's reason names it already
        return Decision(TaskState.queued, f"retrying: attempt {attempts_so_far} {outcome}",
                        feedback=f"The previous attempt {what}: {said}")
    return Decision(TaskState.failed, status.reason or str(outcome))


def risk_of(project: Project, base: str, head: str, checks_passed: bool | None) -> Risk:
    from . import git
    from .risk import score

    return score(git.diff_stats(project.root, base, head), checks_passed=checks_passed,
                 sensitive=project.config.review.sensitive, changed=git.changed_paths(project.root, base, head))


def policy_files_of(project: Project, attempt: Attempt) -> list[str]:
    """The policy files an attempt's change touches ([] before it has a head commit)."""
    from . import git
    from .risk import policy_files

    if not attempt.head_commit:
        return []
    return policy_files(git.changed_paths(project.root, attempt.base_commit, attempt.head_commit))


def changes_policy(files: list[str]) -> str:
    return "it changes policy files: " + ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")


def approved_by_a_person(store: Store, attempt: Attempt) -> bool:
    """Whether the attempt's latest approval was a person's (`approve`), not a policy's or the AI's."""
    approvals = [e for e in store.events(task_id=attempt.task_id, kinds=["attempt.approved"])
                 if e["attempt_id"] == attempt.id]
    return bool(approvals) and approvals[-1]["data"].get("person") is True


def needs_a_person_first(project: Project, tasks: list[Task]) -> list[tuple[Task, Risk | None]]:
    """Tasks waiting for review, the ones that most need a person first: importance, then risk."""
    scored = []
    for task in tasks:
        attempt = project.store.latest_attempt(task.id)
        risk = None
        if attempt and attempt.head_commit:
            risk = risk_of(project, attempt.base_commit, attempt.head_commit, attempt.checks_passed)
        scored.append((task, risk))
    # Policy changes come first: they wait for a person whatever happens. What the AI reviewer
    # is still reading comes last: its verdict may spare the person.
    reviewing = {a.task_id for a in project.store.attempts(ai_review="running")}
    scored.sort(key=lambda pair: (not (pair[1] and pair[1].policy_files), pair[0].id in reviewing,
                                  -pair[0].importance.rank,
                                  -(pair[1].score if pair[1] else 0), -pair[0].priority, pair[0].id))
    return scored


def ai_comments(store: Store, attempt: Attempt) -> list[str]:
    """What the AI reviewer said of an attempt it left to a person ([] when it said nothing)."""
    said = [e for e in store.events(task_id=attempt.task_id, kinds=["review.ai"]) if e["attempt_id"] == attempt.id]
    return list(said[-1]["data"].get("comments") or []) if said else []


def as_feedback(comments: list[str]) -> str:
    return "The reviewer asks for changes:\n" + "\n".join(f"- {c}" for c in comments)


def attempt_to_review(store: Store, task_id: int) -> Attempt:
    task = store.get_task(task_id)
    attempt = store.latest_attempt(task_id)
    if task.state != TaskState.review or attempt is None:
        raise ClawError(f"task {task_id} is {task.state}, not waiting for review",
                        hint="`claw review` lists what waits for you")
    return attempt


def _waited(attempt: Attempt) -> float:
    """Seconds the attempt waited for a person since it was ready."""
    return round(time.time() - (attempt.finished_at or attempt.started_at), 3)


def approve(store: Store, task_id: int, by: str = "person") -> Attempt:
    """A person's approval (from the CLI, the board, a chat or the webhook): the only kind that
    lets a change to policy files land (the merge queue checks `person` in its event)."""
    attempt = attempt_to_review(store, task_id)
    return store.finish_attempt(attempt.id, AttemptState.approved, "attempt.approved",
                                task_state=TaskState.approved, task_reason=f"approved by {by}",
                                event_data={"waited_s": _waited(attempt), "by": by, "person": True})


def reject(project: Project, task_id: int, feedback: str | None = None) -> Attempt:
    """Reject the attempt. With feedback the task goes back to the queue for a new attempt.

    Its worktree is freed either way; its branch stays, so nothing it did is lost.
    """
    store = project.store
    attempt = attempt_to_review(store, task_id)
    if feedback:
        attempt = store.finish_attempt(attempt.id, AttemptState.sent_back, "attempt.sent_back",
                                       task_state=TaskState.queued, task_reason="sent back with feedback",
                                       task_feedback=feedback, feedback=feedback,
                                       event_data={"waited_s": _waited(attempt)})
    else:
        attempt = store.finish_attempt(attempt.id, AttemptState.rejected, "attempt.rejected",
                                       task_state=TaskState.rejected, task_reason="rejected by person",
                                       event_data={"waited_s": _waited(attempt)})
    release_worktree(project, attempt)
    return attempt


def release_worktree(project: Project, attempt: Attempt) -> None:
    if attempt.worktree:
        WorkspacePool(project).release(Path(attempt.worktree), recycle_at=project.target_tip())


def cancel(project: Project, task_id: int) -> None:
    """Cancel a task. A running attempt is stopped (the orchestrator then frees its worktree);
    an attempt waiting for review or merge has its worktree freed now. Branches stay."""
    from .executors.local import LocalExecutor

    store = project.store
    task = store.get_task(task_id)
    store.move_task(task_id, TaskState.cancelled, "task.cancelled", reason="cancelled by person")
    attempt = store.latest_attempt(task_id)
    if attempt is None:
        return
    if attempt.state == AttemptState.running:
        LocalExecutor().stop(attempt.id, project.attempt_dir(attempt.id), attempt.pid)
    elif task.state in (TaskState.review, TaskState.approved):
        release_worktree(project, attempt)


def after_ai_review(verdict, attempts_so_far: int, config: Config,
                    policy_files: list[str] = ()) -> Decision:
    """Where the AI reviewer's verdict sends a task that waits in review. Its approval of a
    change to policy files is a comment: a person decides."""
    if verdict.verdict == "approve" and policy_files:
        return Decision(TaskState.review, f"{verdict.describe()}; a person decides: "
                                          f"{changes_policy(list(policy_files))}")
    if verdict.verdict == "approve":
        return Decision(TaskState.approved, verdict.describe(), auto_approved=True)
    if verdict.verdict == "revise" and attempts_so_far < config.fleet.max_attempts:
        return Decision(TaskState.queued, verdict.describe(),
                        feedback=as_feedback(verdict.comments))
    return Decision(TaskState.review, verdict.describe())
