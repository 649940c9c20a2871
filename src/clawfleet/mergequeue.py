"""The merge step: land approved attempts on the target branch, one way only.

Replay each attempt onto the target's tip as one commit (or its own commits, rebased), re-run the
checks in an integration worktree, then move the target with compare-and-swap (or fast-forward
the person's checkout when the target is checked out and clean). A conflict or a red check
leaves the target untouched and bounces the attempt; what waits for a reason of its own (a file
of the person's in its way) waits alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import disk, git, private, redact
from .checks import all_passed, describe_failure, run_checks
from .containment import contain, workspace_reach
from .sandbox import SandboxPolicy
from .sandbox import resolve as resolve_sandbox
from .errors import ClawError
from .models import Attempt, AttemptState, Task, TaskState
from .procs import ChildGroups
from .project import Project
from .review import approved_by_a_person, changes_policy, policy_files_of
from .workspace import INTEGRATION, WorkspacePool, prepare_integration

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


ALREADY_ON_MAIN = "already on main (empty after rebase)"
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[PX^_][^\x1b]*(\x1b\\)?|.?)")
SUMMARY_LINES, SUMMARY_CHARS = 12, 1000


@dataclass
class LandResult:
    task_id: int
    outcome: str               # "merged", "bounced" or "waiting"
    reason: str = ""
    commit: str | None = None  # what landed; None when nothing did (already on main, or not merged)
    own: bool = False          # a wait for a reason of this landing's own: the others go on

    def describe(self) -> str:
        if self.outcome == "merged":
            return f"task {self.task_id}: " + (f"landed as {self.commit[:10]}" if self.commit else self.reason)
        if self.outcome == "bounced":
            return f"task {self.task_id}: bounced: {self.reason}"
        return f"task {self.task_id}: merge waits: {self.reason}" if self.own else f"merge waits: {self.reason}"


def plain(text: str) -> str:
    """Text as it may go into a commit message: no secret, no terminal escape sequence nor other
    control character (a title or summary is shown raw by `git log` in someone's terminal)."""
    text = _ESCAPES.sub("", redact.text(text)).replace("\t", " ")
    return "".join(c for c in text if c == "\n" or c.isprintable())


def landing_message(task: Task, attempt: Attempt, agent: str) -> str:
    """A squashed attempt's commit message: the task's title, a short body from the agent's
    summary, and trailers saying which task, attempt and agent (KIND/MODEL) made it."""
    title = " ".join(plain(task.title).split())[:200] or f"task {task.id}"
    summary = [line.rstrip() for line in plain(attempt.summary or "").strip().splitlines()]
    body = "\n".join(summary[:SUMMARY_LINES])[:SUMMARY_CHARS]
    trailers = f"Claw-Task: {task.id}\nClaw-Attempt: {attempt.number}\nClaw-Agent: {plain(agent)}"
    return f"{title}\n\n{body}\n\n{trailers}\n" if body else f"{title}\n\n{trailers}\n"


@dataclass
class _Stacked:
    """An attempt replayed onto the stack: the commits it adds there ([]: already on the target)."""
    attempt: Attempt
    commits: list[str]


class MergeQueue:
    """Lands approved attempts so that every commit on the target passes the checks.

    Each attempt lands as one commit by default (`[merge] squash`): its net change (base..head)
    replayed onto the stack's top by `git merge-tree`, so a fix round's red first commit never
    reaches the target. With
    `squash = false` its own commits land, and each one is checked (a red one refuses the attempt).

    Batches (`[merge] batch_size = K`): K attempts are stacked, one commit each, and the checks
    run once, on the stack's top. That stands for every commit in it only when each commit is
    known green on its own: it is the one commit of an attempt whose checks passed at its head
    (its whole change, checked on its base), and the checks pass with all of them together; a
    commit below the top could then only be red if a later task, itself green on its own, repaired
    it. Any other attempt (checks not passed, or several commits with `squash = false`) lands in
    a batch of its own with each of its commits checked. A red top splits the batch in halves,
    each checked at its own top, down to the culprits (bisection: about log2(K) extra runs each).
    """

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
        """Land every approved attempt, `merge.batch_size` at a time, most urgent first. One
        that waits for a reason of its own (a file of yours in its way) is passed over."""
        results: list[LandResult] = []
        passed_over: set[int] = set()
        while True:
            batch = self._next_batch([a for a in self.approved() if a.id not in passed_over])
            if not batch:
                break
            landed = self.land_batch(batch)
            results += landed
            for result in landed:
                self.on_event(result)
            if any(r.outcome == "waiting" and not r.own for r in landed):
                break
            passed_over |= {a.id for a in batch if any(r.own and r.task_id == a.task_id for r in landed)}
        self._keep_wait_reasons(results)
        return results

    def _keep_wait_reasons(self, results: list[LandResult]) -> None:
        """Each approved task keeps why it waits (for `claw status`), or loses a reason gone."""
        waiting = {r.task_id: r.reason for r in results if r.outcome == "waiting"}
        tried = {r.task_id for r in results}
        held_all = next((r.reason for r in results if r.outcome == "waiting" and not r.own), None)
        if held_all:  # what holds the queue holds those behind it too
            waiting |= {t.id: held_all for t in self.store.list_tasks([TaskState.approved]) if t.id not in tried}
        for reason in dict.fromkeys(waiting.values()):
            self.store.set_merge_wait([t for t, why in waiting.items() if why == reason], reason)
        held = [t.id for t in self.store.list_tasks([TaskState.approved]) if t.merge_wait]
        if gone := [t for t in held if t not in waiting]:
            self.store.set_merge_wait(gone, None)

    def _next_batch(self, attempts: list[Attempt]) -> list[Attempt]:
        """The first attempts, up to `batch_size`, that may be checked as one (see the class)."""
        batch: list[Attempt] = []
        for attempt in attempts[:self.config.merge.batch_size]:
            if not self._batchable(attempt):
                return batch or [attempt]
            batch.append(attempt)
        return batch

    def _batchable(self, attempt: Attempt) -> bool:
        if not attempt.checks_passed:
            return False
        return self.config.merge.squash or len(git.commits_between(
            self.project.root, attempt.base_commit, attempt.head_commit)) <= 1

    def land(self, attempt: Attempt) -> LandResult:
        return self.land_batch([attempt])[0]

    def _target_checkout_blocked(self, target: str) -> str | None:
        checkout = git.worktree_of_branch(self.project.root, target)
        dirty = git.dirty_files(checkout, repo=self.project.root) if checkout is not None else []
        if dirty:
            shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
            return (f"your checkout of '{target}' at {checkout} has uncommitted changes ({shown}): "
                    "commit or stash them, then run `claw merge`")
        return None

    def _in_the_way(self, attempt: Attempt, checkout: Path) -> str | None:
        """Why this attempt alone cannot land in the person's checkout of the target now: an
        untracked file of theirs where it writes one (`git merge --ff-only` would refuse)."""
        paths = git.changed_paths(self.project.root, attempt.base_commit, attempt.head_commit)
        found = git.untracked_in_the_way(checkout, paths, repo=self.project.root)
        if not found:
            return None
        shown = ", ".join(str(checkout / f) for f in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        return (f"an untracked file of yours is where it writes one: {shown}. Move it away or "
                "delete it (or commit it), then run `claw merge`")

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

    def _replay(self, integration: Path, attempt: Attempt, top: str) -> tuple[list[str], list[str]]:
        """Put the attempt on `top`: (the commits it adds, conflicted files)."""
        head = attempt.head_commit
        if self.config.merge.squash:
            task = self.store.get_task(attempt.task_id)
            message = landing_message(task, attempt, self._agent_label(task, attempt))
            landed = git.replay_as_one(self.project.root, attempt.base_commit, head, top, message)
            if landed is not None:
                commit, conflicts = landed
                return [commit] if commit else [], conflicts
            head = git.squash_commit(self.project.root, attempt.base_commit, head, message)
        conflicts = git.rebase_onto(integration, head, attempt.base_commit, top, repo=self.project.root)
        if conflicts:
            return [], conflicts
        new_top = git.rev(integration, "HEAD")  # checked: the merge queue's own worktree
        return git.commits_between(self.project.root, top, new_top), []

    def _agent_label(self, task: Task, attempt: Attempt) -> str:
        try:
            config = self.config.agent(attempt.agent, model=task.model)
        except ClawError:  # no longer configured: its name is what is known
            return attempt.agent
        return f"{config.kind}/{getattr(config, 'model', None) or task.model or 'default'}"

    def land_batch(self, attempts: list[Attempt]) -> list[LandResult]:
        """Stack the attempts on the target's tip, check, move the target once.

        A conflicting attempt is bounced (and a task to resolve it queued) and the rest go on;
        one whose change is on the target already lands as nothing (ALREADY_ON_MAIN). When the
        checks fail, the batch is split in halves and each half tried on its own (bisection).
        More than one attempt is expected to be batchable (`_next_batch`); what is not is
        landed in turn.
        """
        unapproved = [(a, files) for a in attempts if (files := self._policy_without_a_person(a))]
        if unapproved:
            refused = [self._bounce(a, f"{changes_policy(files)}, and no person approved it: nothing "
                                       "landed (its branch keeps the work)") for a, files in unapproved]
            rest = [a for a in attempts if a.id not in {b.id for b, _ in unapproved}]
            return refused + (self.land_batch(rest) if rest else [])
        if len(attempts) > 1 and not all(map(self._batchable, attempts)):
            return self._land_in_turn(attempts)
        target = self.config.fleet.target
        settled: list[LandResult] = []  # bounced in a round the target's move made void
        for _ in range(CAS_RETRIES):
            blocked = self._target_checkout_blocked(target)
            if blocked:
                return settled + [LandResult(a.task_id, "waiting", blocked) for a in attempts]
            results: list[LandResult] = list(settled)
            checkout = git.worktree_of_branch(self.project.root, target)
            for attempt in attempts if checkout is not None else ():
                if (in_the_way := self._in_the_way(attempt, checkout)) is not None:
                    results.append(LandResult(attempt.task_id, "waiting", in_the_way, own=True))
            waits = {r.task_id for r in results}
            tip = self.project.target_tip()
            integration = self._integration_worktree(tip)
            stacked: list[_Stacked] = []
            top = tip
            for attempt in attempts:
                if attempt.task_id in waits:
                    continue
                commits, conflicts = self._replay(integration, attempt, top)
                if conflicts:
                    results.append(self._bounce_conflict(attempt, conflicts))
                    continue
                stacked.append(_Stacked(attempt, commits))
                top = commits[-1] if commits else top
            if top == tip:  # nothing to move: what is stacked is all on the target already
                return results + [self._merged(s.attempt, None) for s in stacked]
            failure = self._check_stack(integration, stacked, tip, top)
            if failure is not None:
                changing = [s for s in stacked if s.commits]
                if len(changing) == 1:
                    rest = [s.attempt for s in stacked if not s.commits]  # empty only on top of it
                    return results + [self._bounce(changing[0].attempt, failure)] + \
                        (self.land_batch(rest) if rest else [])
                half = len(stacked) // 2
                first = self.land_batch([s.attempt for s in stacked[:half]])
                if any(r.outcome == "waiting" and not r.own for r in first):
                    return results + first
                return results + first + self.land_batch([s.attempt for s in stacked[half:]])
            moved = self._move_target(tip, top, [(s.attempt, top) for s in stacked])
            if moved is None:  # the target moved while we checked: stack again on the new tip
                settled = [r for r in results if r.outcome == "bounced"]
                attempts = [a for a in attempts if a.task_id not in {r.task_id for r in settled}]
                continue
            if moved:
                return results + [LandResult(s.attempt.task_id, "waiting", moved) for s in stacked]
            return results + [self._merged(s.attempt, s.commits[-1] if s.commits else None) for s in stacked]
        return settled + [LandResult(a.task_id, "waiting", f"the target branch kept moving; tried "
                                                           f"{CAS_RETRIES} times") for a in attempts]

    def _land_in_turn(self, attempts: list[Attempt]) -> list[LandResult]:
        results: list[LandResult] = []
        rest = list(attempts)
        while rest:
            batch = self._next_batch(rest)
            rest = rest[len(batch):]
            landed = self.land_batch(batch)
            results += landed
            if any(r.outcome == "waiting" and not r.own for r in landed):
                return results + [LandResult(a.task_id, "waiting", landed[-1].reason) for a in rest]
        return results

    def _merged(self, attempt: Attempt, commit: str | None) -> LandResult:
        reason = f"landed as {commit[:10]}" if commit else ALREADY_ON_MAIN
        self.store.finish_attempt(attempt.id, AttemptState.merged, "attempt.merged",
                                  task_state=TaskState.merged, task_reason=reason,
                                  **({"head_commit": commit} if commit else {}))
        self._clean_up(attempt, delete_branch=True)
        return LandResult(attempt.task_id, "merged", "" if commit else ALREADY_ON_MAIN, commit=commit)

    def _policy_without_a_person(self, attempt: Attempt) -> list[str]:
        """The policy files the attempt changes when no person approved it ([] otherwise): the
        last word on them, whatever path approved it (review.decide keeps them from policies
        and the AI reviewer; this catches any other)."""
        files = policy_files_of(self.project, attempt)
        return files if files and not approved_by_a_person(self.store, attempt) else []

    def _check_stack(self, integration: Path, stacked: list[_Stacked], tip: str, top: str) -> str | None:
        """Why the stack may not land (None when every commit that lands passes the checks):
        a batch is checked at its top (see the class); one attempt at each of its commits."""
        if len(stacked) > 1:
            failure = self._check(integration, [s.attempt for s in stacked], top, tip)
            return None if failure is None else "checks failed after rebase onto the target: " + failure
        alone = stacked[0]
        for number, commit in enumerate(alone.commits, 1):
            failure = self._check(integration, [alone.attempt], commit, tip, last=number == len(alone.commits))
            if failure is not None:
                where = f" at its commit {number} of {len(alone.commits)} ({commit[:10]}; every commit that " \
                        "lands must pass: `[merge] squash = true` lands the attempt as one)" \
                    if len(alone.commits) > 1 else ""
                return f"checks failed after rebase onto the target{where}: {failure}"
        return None

    def _check(self, integration: Path, attempts: list[Attempt], commit: str, tip: str,
               last: bool = True) -> str | None:
        """Run the checks at `commit` in the integration worktree; None when they pass (or need not run)."""
        tasks = [self.store.get_task(a.task_id) for a in attempts]
        commands = [*self.config.checks.commands, *(c for t in tasks for c in t.checks)]
        # An attempt's last commit on the very base its checks passed on is the tree they passed.
        alone = attempts[0]
        if not commands or (len(attempts) == 1 and last and alone.base_commit == tip and alone.checks_passed):
            return None
        git.git("switch", "--quiet", "--detach", "--discard-changes", commit, cwd=integration)
        lead = attempts[-1]
        children = ChildGroups(self.project.attempt_dir(lead.id) / "children")
        env, setup_failure = prepare_integration(self.project, integration, commit, children, self.sandbox)
        if setup_failure:
            return setup_failure
        # The checks run the agents' code: in the same sandbox as the agents.
        reach = workspace_reach(integration, self.project.root, git.common_dir(self.project.root), env)
        results = run_checks(commands, cwd=integration, timeout=self.config.checks.timeout,
                             log_dir=self.project.attempt_dir(lead.id) / "checks",
                             label=f"merge-batch{len(attempts)}-{commit[:8]}", children=children, env=env,
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
                if not disk.room_for(checkout, git.blob_sizes(self.project.root, top, landing)):
                    return disk.DiskFull(checkout).message + ": free space; the landing waits"
                try:
                    git.fast_forward_checkout(checkout, top, repo=self.project.root)
                except git.GitError as error:  # e.g. an untracked file of theirs is in the way
                    if disk.is_full_error(error):  # what it wrote is undone (fast_forward_checkout)
                        return disk.DiskFull(checkout).message + ": free space; the landing waits"
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
            checks=task.checks, resolves=task.id, body=RESOLVE_BODY.format(
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
