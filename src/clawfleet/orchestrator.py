"""The loop behind `claw run`: recover, schedule, start, collect, review, land.

One orchestrator per repository at a time (a lock file). All state lives in the store and the
attempt folders, so this process can be killed at any point and started again: live runners are
reattached, finished ones collected, dead ones marked crashed and retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import faults, git, memory, private, radar, refwatch, reviewer, sandbox, skills
from .daemoninfo import running_daemon
from .errors import ClawError
from .executors.local import LocalExecutor, Running, runner_began
from .mergequeue import LandResult, MergeQueue
from .models import Attempt, AttemptState, Task, TaskState
from .procs import PidLock
from .project import Project
from .prompt import render_prompt
from .review import Decision, after_ai_review, decide, policy_files_of, risk_of
from .risk import Risk
from .runner import AttemptSpec, AttemptStatus, finalise_folder, read_progress
from .scheduler import for_project
from .workspace import WorkspacePool

HARD_KILL_GRACE_S = 15.0
DIFF_LIMIT = 40_000      # characters of an earlier attempt's diff put in a fresh start's prompt
MERGE_RETRY_S = 2.0
BUDGET_CHECK_S = 1.0
# Best-of-N: which outcome is better (lower first); everything else comes after these.
BEST_OF_ORDER = {AttemptState.ready: 0, AttemptState.checks_failed: 1, AttemptState.no_change: 2}       # how often refused calls are looked for (a query by primary key)


def OrchestratorLock(run_dir: Path) -> PidLock:
    """Only one orchestrator drives a repository; a second one is told who holds it."""
    def refuse(holder: str) -> ClawError:
        daemon = running_daemon(run_dir)
        if daemon and str(daemon.pid) == holder:
            return ClawError(f"the claw daemon (pid {holder}) drives this repository",
                             hint="it runs queued tasks by itself; `claw down` stops it")
        return ClawError(f"another claw orchestrator (pid {holder}) is running in this repository",
                         hint="wait for it to finish, or stop it; `claw status` shows its progress")
    return PidLock(run_dir / "orchestrator.lock", refuse)


class Orchestrator:
    def __init__(self, project: Project, *, slots: int | None = None, merge: bool | None = None,
                 respect_footprints: bool | None = None,
                 on_event: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.project = project
        self.store = project.store
        self.config = project.config
        private.restrict_process()  # its files, the zygote's and the runners': 0600 in 0700 folders
        project.make_private()
        self.secret_sources = project.secret_sources()  # names and paths for each runner's redactor
        self.slots = slots or self.config.fleet.slots
        self.merge = self.config.review.merge_on_approve if merge is None else merge
        self.executor = LocalExecutor(zygote_log=project.run_dir / "zygote.log", on_exit=self.wake)
        self.executor.warm()
        self.reviews = reviewer.Reviews()
        self.pool = WorkspacePool(project, size=max(self.config.fleet.pool_size, 0))
        self.merge_queue = MergeQueue(project, self.pool, on_event=self._landed)
        self.on_event = on_event or (lambda message: None)
        self.clock = clock
        self.scheduler = for_project(project, respect_footprints)
        self._radar_at = 0.0
        self.gateway = None
        self._backing_off = False
        self._merge_waiting: tuple[set[str], float] | None = None
        self._collisions: set[tuple] = set()
        self._scan: Future | None = None     # the radar scan under way in its thread
        self._budget_at = 0.0
        self._deadlines: dict[int, float] = {}        # attempt id -> its spec's deadline
        self._progress_seen: dict[int, tuple[int, int]] = {}  # attempt id -> progress.json seen
        self._refused_after = 0
        self._skill_problems: set[str] = set()
        self.paused = False  # no new attempts (the daemon drains before it stops)
        self._wake = threading.Event()
        self.sandbox: sandbox.SandboxPolicy | None = None
        self.refs: refwatch.RefWatch | None = None   # while agents run unsandboxed

    # -- the loop -------------------------------------------------------------------------

    def run(self, tick: float = 0.02, on_tick: Callable[[], None] | None = None,
            until: Callable[[], bool] | None = None) -> None:
        """Run until nothing is running and nothing more can start.

        With `until` (the daemon), keep running while idle, and stop as soon as `until()` is
        true; attempts still running are left to run, and the next run reattaches to them.
        """
        self.project.target_tip()  # fail early with a clear error on a bad target
        # The store is never in an agent's reach: notes come through the attempt's outbox.
        self.sandbox = sandbox.resolve(self.config.sandbox, warn=self.on_event)
        self.merge_queue.use_sandbox(self.sandbox)
        self.pool.sandbox = self.sandbox   # its setup and teardown too
        # closing(executor): its zygote ends with the run (the runners it forked go on).
        with OrchestratorLock(self.project.run_dir), ThreadPoolExecutor(1, "pool-filler") as filler, \
                ThreadPoolExecutor(1, "radar") as scanner, self._gateway(), closing(self.executor):
            if self.sandbox is None:
                # Agents could move refs or plant hooks: watch what they could touch.
                self.refs = refwatch.RefWatch(self.project, attempts_ran=bool(self.running()))
            self.collect()  # reattach or collect what a previous orchestrator left
            self._fail_lost_heads()
            filling: Future | None = None
            while True:
                ended = self.collect() + self.stop_over_budget() + self.collect_reviews()
                if self.merge:
                    self.land()  # before scheduling: landing unblocks dependents
                self.watch_refs()
                self.watch_conflicts(scanner)
                started = self.schedule()
                if on_tick:
                    on_tick()
                if until is not None:
                    if until():
                        break
                elif (not started and not self.running() and not self._backing_off
                      and not self.store.attempts(ai_review="running")):
                    if filling is not None and not filling.done():
                        self.on_event("waiting for the pool to finish setting up a workspace "
                                      "(Ctrl-C leaves it; the next run cleans up)")
                    break
                if filling is None or filling.done():
                    if filling is not None and filling.exception() is not None:
                        self.on_event(f"could not fill the worktree pool: {filling.exception()}")
                    # One worktree at a time, in the background: starts and collects go on.
                    filling = filler.submit(self.pool.fill, self.project.target_tip, 1)
                if not started and not ended:
                    self._wake.wait(tick)
                    self._wake.clear()

    def wake(self) -> None:
        """Look now rather than at the next tick: new work arrived (from any thread)."""
        self._wake.set()

    @contextmanager
    def _gateway(self) -> Iterator[None]:
        """With `[gateway] enabled`, meter every attempt's model calls for the run's duration."""
        if not self.config.gateway.enabled:
            yield
            return
        from .llm.gateway import GatewayServer

        self.gateway = GatewayServer(self.project.root, port=self.config.gateway.port)
        self.gateway.start()
        self.on_event(f"gateway at {self.gateway.url}")
        try:
            yield
        finally:
            self.gateway.stop()
            self.gateway = None

    def running(self) -> list[Attempt]:
        return self.store.attempts(states=[AttemptState.running])

    # -- starting attempts ----------------------------------------------------------------

    def schedule(self) -> int:
        if self.paused or len(self.running()) >= self.slots:
            return 0
        plan = self.scheduler.plan(self.slots)
        self._backing_off = plan.backing_off
        base = self.project.target_tip() if plan.start else None  # one look for all of them
        # One after another: launching them side by side (threads) was measured slower on two
        # cores, as the launches then compete with the runners' own start and commit.
        for task in plan.start:
            self.start(task.id, base=base)
        return len(plan.start)

    def start(self, task_id: int, base: str | None = None) -> list[Attempt]:
        """Start a queued task: one attempt, or `best_of` side by side from the same base
        (`base`, or the target's tip now)."""
        task = self.store.get_task(task_id)
        agents = task.attempt_agents(self.config.fleet.default_agent)
        try:
            configs = {name: self.config.agent(name, model=task.model, effort=task.effort) for name in agents}
        except ClawError as error:
            self.store.move_task(task_id, TaskState.failed, "task.failed", reason=str(error))
            self.on_event(f"task {task_id} failed: {error}")
            return []
        base = base or self.project.target_tip()
        earlier = self._sent_back(task)
        attempts = self.store.start_attempts(task_id, agents=agents, base_commit=base,
                                             branch_for=lambda n: git.branch_name(task_id, task.title, n))
        for attempt in attempts:
            self._launch(task, attempt, configs[attempt.agent], earlier)
        return attempts

    def _sent_back(self, task: Task, before: Attempt | None = None) -> Attempt | None:
        """The attempt a new one continues: the task's latest (before `before`, one started
        again), when a person or the AI reviewer sent it back with feedback, or when its runner
        died mid-turn (a crash, a reboot) after its agent's session began: the retry takes up
        that session where the kind can. A `claw retry` starts over."""
        if before is None:
            latest = self.store.latest_attempt(task.id)
        else:
            earlier = [a for a in self.store.attempts(task_id=task.id) if a.number < before.number]
            latest = earlier[-1] if earlier else None
        if latest and latest.state == AttemptState.sent_back and task.feedback and latest.head_commit:
            return latest
        if latest and latest.state == AttemptState.crashed and latest.session:
            return latest
        return None

    def _continue(self, task: Task, attempt: Attempt, workspace: Any,
                  earlier: Attempt) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Put a send-back's new workspace at the earlier attempt's work: its commits replayed on
        the attempt's base (the target's tip now). Returns where the attempt starts (the runner's
        `continued`) and the session it goes on with (its `resume`), or None: a new session.

        When the commits no longer apply on the tip, the attempt starts from the tip, with the
        earlier diff in its prompt, and says so (event `attempt.fresh_start`, the task's reason)."""
        target, base = self.config.fleet.target, attempt.base_commit
        interrupted = earlier.state == AttemptState.crashed
        # A crashed attempt's work is what was committed of it when it was released.
        head = earlier.head_commit or git.branch_tip(self.project.root, earlier.branch) or earlier.base_commit
        info: dict[str, Any] = {"number": earlier.number, "branch": earlier.branch, "target": target,
                                "replayed": False, "rebased": earlier.base_commit != base,
                                "conflicts": [], "diff": None, "interrupted": interrupted}
        try:
            conflicts = git.rebase_onto(workspace.path, head, earlier.base_commit, base,
                                        repo=self.project.root)
        except ClawError as error:
            conflicts = [f"(it could not be replayed: {error})"]
        if conflicts:
            git.start_branch(workspace.path, attempt.branch, base, repo=self.project.root)   # back at the tip
            diff = git.diff(self.project.root, earlier.base_commit, head)
            info.update(conflicts=conflicts, diff=diff if len(diff) <= DIFF_LIMIT else
                        diff[:DIFF_LIMIT] + f"\n[... {len(diff) - DIFF_LIMIT} more characters of the diff left out]")
            reason = (f"attempt {earlier.number}'s branch no longer rebases cleanly on {target} "
                      f"(conflicts in {', '.join(conflicts[:5])}): attempt {attempt.number} starts fresh "
                      f"from {target}, with that diff and the feedback in its prompt")
            self.store.note_task(task.id, reason, "attempt.fresh_start", attempt_id=attempt.id,
                                 from_attempt=earlier.id, conflicts=conflicts)
            self.on_event(f"task {task.id}: {reason}")
            return info, None
        head = git.rev(workspace.path, "HEAD")
        git.start_branch(workspace.path, attempt.branch, head, repo=self.project.root)
        self.pool.replan(workspace, head)   # the setup inputs may differ at the earlier work
        info["replayed"] = True
        resume = None
        if earlier.agent == attempt.agent and earlier.session:
            resume = {"attempt_dir": str(self.project.attempt_dir(earlier.id)), "session": earlier.session}
        self.store.record_event("attempt.continued", task_id=task.id, attempt_id=attempt.id,
                                from_attempt=earlier.id, head=head, rebased=info["rebased"],
                                session=earlier.session if resume else None, interrupted=interrupted)
        self.on_event(f"task {task.id}: attempt {attempt.number} continues "
                      f"{'interrupted ' if interrupted else ''}attempt {earlier.number}'s work"
                      + (f", rebased onto {target}" if info["rebased"] else "")
                      + (f", in its session {earlier.session}" if resume else ""))
        return info, resume

    def _launch(self, task: Task, attempt: Attempt, agent_config: Any, earlier: Attempt | None = None) -> None:
        """Give a new attempt its worktree, spec and first prompt, and start its runner; a
        send-back's (`earlier`: the attempt sent back) at the earlier attempt's work."""
        agent_name, task_id, base = attempt.agent, task.id, attempt.base_commit
        attempt_dir = self.project.attempt_dir(attempt.id)
        private.folder(attempt_dir)
        try:
            workspace = self.pool.acquire(attempt.id, attempt.branch, base)
        except ClawError as error:
            self._finish(attempt, AttemptStatus(AttemptState.failed, f"could not make its workspace: {error}",
                                                finished_at=self.clock()))
            return
        continued = resume = None
        if earlier is not None:
            continued, resume = self._continue(task, attempt, workspace, earlier)
        worktree = workspace.path
        spec = AttemptSpec(
            attempt_id=attempt.id, attempt_number=attempt.number,
            task={k: v for k, v in vars(task).items()}, project_root=str(self.project.root),
            worktree=str(worktree), branch=attempt.branch, base_commit=base,
            agent_name=agent_name, agent=agent_config.model_dump(),
            checks=[*self.config.checks.commands, *task.checks],
            check_timeout=self.config.checks.timeout, fix_rounds=self.config.checks.fix_rounds,
            deadline=self.clock() + self.config.fleet.attempt_timeout, feedback=task.feedback,
            gateway_url=self.gateway.attempt_url(attempt.id) if self.gateway else None,
            gateway_key=self.gateway.attempt_key(attempt.id) if self.gateway else None,
            env=workspace.env, setup=asdict(workspace.setup) if workspace.setup else None,
            sandbox=self.sandbox.to_dict() if self.sandbox else None,
            stall_timeout=self.config.fleet.stall_timeout, secrets=self.secret_sources,
            continued=continued, resume=resume)
        spec.save(attempt_dir)
        private.write_text(attempt_dir / "prompt-0.md", self.project.redactor.text(render_prompt(
            task, project_root=self.project.root, branch=attempt.branch, checks=spec.checks,
            feedback=task.feedback, agent_kind=agent_config.kind, previous=continued)))
        self._report_skill_problems(task)
        if self.refs is not None:
            self.refs.note_activity()
        faults.point("before-fork")
        pid = self.executor.start(attempt.id, attempt_dir, cwd=worktree)
        self.store.update_attempt(attempt.id, pid=pid, worktree=str(worktree))
        self.on_event(f"task {task_id}: attempt {attempt.number} started ({agent_name})")

    def _report_skill_problems(self, task: Task) -> None:
        """Say once per run that a skill is skipped (a symlink in it, a bad SKILL.md): attempts
        go on without it, and the person learns why from an event, not from a crash."""
        for problem in skills.discover(self.project.root)[1]:
            if problem.message not in self._skill_problems:
                self._skill_problems.add(problem.message)
                self.store.record_event("skill.skipped", task_id=task.id, reason=problem.message)
                self.on_event(f"skill skipped: {problem.message}")

    # -- the ref watch --------------------------------------------------------------------

    def watch_refs(self) -> None:
        """Report what unsandboxed agents changed in the repository behind clawfleet's back
        (refwatch.py): at most one look every 0.2 s, a few `lstat`s when nothing changed."""
        if self.refs is None or not self.refs.due():
            return
        active = bool(self.running()) or bool(self.store.attempts(ai_review="running"))
        for change in self.refs.look(active):
            self.on_event(("security: " if change.alarm else "") + change.describe())

    # -- conflict radar -------------------------------------------------------------------

    def watch_conflicts(self, scanner: ThreadPoolExecutor | None = None) -> None:
        """Scan for coming conflicts every `radar_interval` seconds while attempts run.

        With `scanner`, the scan (git for every pair of branches) runs in that thread, on a store
        connection of its own, and its collisions are recorded at a later tick: the loop never
        waits for it.
        """
        if self._scan is not None:
            if not self._scan.done():
                return
            scan, self._scan = self._scan, None
            try:
                self._record_collisions(scan.result())
            except (ClawError, OSError) as error:
                self.on_event(f"radar: the scan failed: {error}")
        interval = self.config.fleet.radar_interval
        if not interval or self.clock() - self._radar_at < interval or not self.running():
            return
        self._radar_at = self.clock()
        if scanner is None:
            self._record_collisions(radar.scan(self.project))
        else:
            self._scan = scanner.submit(self._scan_apart)

    def _scan_apart(self) -> radar.RadarReport:
        project = Project(self.project.root)
        try:
            return radar.scan(project)
        finally:
            project.store.close()

    def _record_collisions(self, report: radar.RadarReport) -> None:
        for collision in report.collisions:
            key = (collision.attempt, collision.other_attempt, tuple(collision.files))
            if key not in self._collisions:
                self._collisions.add(key)
                message = collision.describe(self.config.fleet.target)
                self.store.record_event("radar.conflict", task_id=collision.task,
                                        attempt_id=collision.attempt, files=collision.files,
                                        other_task=collision.other_task)
                self.on_event(f"radar: {message}")

    # -- collecting -----------------------------------------------------------------------

    def collect(self) -> int:
        """Look at every running attempt once; return how many ended."""
        ended = 0
        for attempt in self.running():
            attempt_dir = self.project.attempt_dir(attempt.id)
            result = self.executor.poll(attempt.id, attempt_dir, attempt.pid)
            if isinstance(result, Running):
                self._refresh_usage(attempt, attempt_dir)
                if self.clock() > self._deadline(attempt_dir, attempt) + HARD_KILL_GRACE_S:
                    self.executor.stop(attempt.id, attempt_dir, attempt.pid)
                    self._finish(attempt, AttemptStatus(AttemptState.timed_out,
                                                        "killed: past its time limit",
                                                        finished_at=self.clock()))
                    ended += 1
                continue
            self._deadlines.pop(attempt.id, None)
            self._progress_seen.pop(attempt.id, None)
            if result is None and not attempt.pid and not runner_began(attempt_dir):
                self._restart(attempt)
                ended += 1
                continue
            if result is None:
                self.executor.stop(attempt.id, attempt_dir, attempt.pid)  # orphans it left
                # What its progress said last: the tokens it used, and its session for the retry to take up.
                progress = read_progress(attempt_dir)
                session = progress.get("session")
                result = AttemptStatus(AttemptState.crashed,
                                       "the runner died without writing its status",
                                       finished_at=self.clock(),
                                       input_tokens=int(progress.get("input_tokens") or 0),
                                       output_tokens=int(progress.get("output_tokens") or 0),
                                       session=session if isinstance(session, str) else None)
            try:
                self._finish(attempt, result)
            except ClawError as error:
                # One attempt clawfleet cannot wrap up (a head commit git does not know, a
                # worktree an agent tampered with) must not stop this run, nor every later one
                # at recovery: it fails, saying why, and the rest goes on.
                self._could_not_finish(attempt, error)
            ended += 1
        return ended

    def _fail_lost_heads(self) -> None:
        """Fail each waiting attempt whose head commit git no longer has (a branch deleted and
        collected, a store copied from elsewhere): landing or reviewing it would stop this run
        and every later one at the same git error, with the other tasks behind it."""
        for attempt in self.store.attempts(states=[AttemptState.ready, AttemptState.approved]):
            if attempt.head_commit and git.rev(self.project.root, attempt.head_commit) is None:
                reason = (f"its head commit {attempt.head_commit} is not in the repository: "
                          "there is nothing to review or land")
                task = self.store.get_task(attempt.task_id)
                waiting = task.state in (TaskState.review, TaskState.approved) and \
                    self.store.latest_attempt(task.id).id == attempt.id
                # (a task in review cannot fail, by the task model: no person can approve it)
                moved = {TaskState.approved: TaskState.failed, TaskState.review: TaskState.rejected}
                self.store.finish_attempt(attempt.id, AttemptState.failed, "attempt.failed", reason=reason,
                                          task_state=moved[task.state] if waiting else None, task_reason=reason)
                self.on_event(f"task {task.id}: attempt {attempt.number} failed: {reason}")

    def _restart(self, attempt: Attempt) -> None:
        """Start again an attempt whose runner never started (the orchestrator was killed
        between recording it and the fork): nothing ran, so it burns no try. The workspace it
        was given (and its ports) goes back first; its branch, which holds nothing, goes too."""
        self._free_workspaces(attempt.id)
        git.delete_branch(self.project.root, attempt.branch)
        task = self.store.get_task(attempt.task_id)
        if task.state != TaskState.running:  # cancelled meanwhile
            self.store.finish_attempt(attempt.id, AttemptState.cancelled, "attempt.cancelled",
                                      reason="cancelled before its runner started")
            return
        try:
            config = self.config.agent(attempt.agent, model=task.model, effort=task.effort)
        except ClawError as error:
            self.store.finish_attempt(attempt.id, AttemptState.failed, "attempt.failed", reason=str(error),
                                      task_state=TaskState.failed, task_reason=str(error))
            return
        self.store.record_event("attempt.restarted", task_id=task.id, attempt_id=attempt.id,
                                reason="its runner never started")
        self.on_event(f"task {task.id}: attempt {attempt.number} restarted (its runner never started)")
        self._launch(task, attempt, config, self._sent_back(task, before=attempt))

    def _free_workspaces(self, attempt_id: int) -> None:
        """Give back every workspace the pool handed to `attempt_id` (its record may not know it)."""
        for row in self.store.workspaces(["in_use"]):
            if row["attempt_id"] == attempt_id:
                self.pool.release(Path(row["path"]), recycle_at=self.project.target_tip())

    def _could_not_finish(self, attempt: Attempt, error: ClawError) -> None:
        reason = f"clawfleet could not wrap up this attempt: {error}"
        self.on_event(f"task {attempt.task_id}: attempt {attempt.number}: {reason}")
        if self.store.get_attempt(attempt.id).state == AttemptState.running:
            running = self.store.get_task(attempt.task_id).state == TaskState.running
            self.store.finish_attempt(attempt.id, AttemptState.failed, "attempt.failed", reason=reason,
                                      task_state=TaskState.failed if running else None, task_reason=reason)
        try:
            self._release(attempt, keep=True)
        except ClawError as again:
            self.on_event(f"attempt {attempt.id}: could not free its workspace: {again}")

    def stop_over_budget(self) -> int:
        """Stop each running attempt the gateway refused a call for being over budget (checked
        every second: the gateway may be this process's or a `claw gateway` of its own)."""
        if self.clock() - self._budget_at < BUDGET_CHECK_S:
            return 0
        self._budget_at = self.clock()
        refused = self.store.refused_calls(self._refused_after)
        if not refused:
            return 0
        self._refused_after = refused[-1][0]
        running = {attempt.id: attempt for attempt in self.running()}
        stopped = 0
        for _, attempt_id, message in refused:
            attempt = running.pop(attempt_id, None)
            if attempt is None:
                continue
            attempt_dir = self.project.attempt_dir(attempt.id)
            self.executor.stop(attempt.id, attempt_dir, attempt.pid)
            # The stopped runner commits the work it leaves and writes its status; _finish
            # then marks it over budget.
            self._finish(attempt, AttemptStatus.read(attempt_dir) or AttemptStatus(
                AttemptState.cancelled, message, finished_at=self.clock()))
            stopped += 1
        return stopped

    def _deadline(self, attempt_dir: Path, attempt: Attempt) -> float:
        if attempt.id in self._deadlines:  # a spec never changes: read it once, not every tick
            return self._deadlines[attempt.id]
        try:
            deadline = AttemptSpec.load(attempt_dir).deadline
        except (OSError, ValueError, TypeError):
            return attempt.started_at + self.config.fleet.attempt_timeout
        self._deadlines[attempt.id] = deadline
        return deadline

    def _refresh_usage(self, attempt: Attempt, attempt_dir: Path) -> None:
        try:
            info = (attempt_dir / "progress.json").stat()
        except OSError:
            return
        # Each write replaces the file (a new inode): a cheap stat tells whether to read it.
        if self._progress_seen.get(attempt.id) == (info.st_ino, info.st_mtime_ns):
            return
        self._progress_seen[attempt.id] = (info.st_ino, info.st_mtime_ns)
        progress = read_progress(attempt_dir)
        tokens = (progress.get("input_tokens", 0), progress.get("output_tokens", 0))
        session = progress.get("session") if isinstance(progress.get("session"), str) else attempt.session
        if tokens != (attempt.input_tokens, attempt.output_tokens) or session != attempt.session:
            self.store.update_attempt(attempt.id, input_tokens=tokens[0], output_tokens=tokens[1],
                                      session=session)

    def _finish(self, attempt: Attempt, status: AttemptStatus) -> None:
        if not status.redacted:  # its runner died or was killed before it could
            finalise_folder(self.project.attempt_dir(attempt.id))
        task = self.store.get_task(attempt.task_id)
        self._import_notes(task, attempt, self.project.attempt_dir(attempt.id) / memory.OUTBOX_DIR)
        if status.outcome in (AttemptState.failed, AttemptState.cancelled, AttemptState.crashed):
            # An agent refused by the gateway often ends by itself, before it is stopped.
            refusal = self.store.budget_refusal(attempt.id)
            if refusal is not None:
                status = replace(status, outcome=AttemptState.over_budget,
                                 reason=refusal.removeprefix("clawfleet gateway: "))
        fields = _fields(status)
        if task.state != TaskState.running:  # cancelled while it ran
            self.store.finish_attempt(attempt.id, AttemptState.cancelled, "attempt.cancelled", **fields)
            self._release(attempt, keep=True)
            return
        self._learn(task, attempt, status)
        siblings = self.store.siblings(attempt) if task.best_of > 1 else [attempt]
        if len(siblings) > 1:
            # Best-of-N: each outcome is recorded as it comes; the last one picks the best.
            self.store.finish_attempt(attempt.id, status.outcome, f"attempt.{status.outcome}", **fields)
            self.on_event(f"task {task.id}: attempt {attempt.number} {status.outcome}")
            if any(s.id != attempt.id and s.state == AttemptState.running for s in siblings):
                if status.outcome != AttemptState.ready:
                    self._release(attempt, keep=status.outcome != AttemptState.no_change)
                return
            attempt, status, ranking = self._keep_best(task, siblings, attempt.id, status)
            self._decide(task, attempt, status, "attempt.kept", {"best_of": ranking})
            return
        self._decide(task, attempt, status, f"attempt.{status.outcome}", {})

    def _import_notes(self, task: Task, attempt: Attempt, outbox: Path, tags: tuple[str, ...] = ()) -> None:
        """The notes an agent left in its outbox into memory, validated, with the attempt's
        provenance; what was refused is an event (the attempt goes on as if it had none)."""
        reading = memory.import_outbox(self.store, outbox, task_id=task.id, attempt_id=attempt.id, tags=tags)
        if reading.problems:
            self.store.record_event("memory.outbox_refused", task_id=task.id, attempt_id=attempt.id,
                                    problems=reading.problems, imported=reading.imported)
            self.on_event(f"task {task.id}: attempt {attempt.number}'s outbox: refused "
                          f"{reading.problems[0]}" + (f" (+{len(reading.problems) - 1} more)"
                                                      if len(reading.problems) > 1 else ""))

    def _learn(self, task: Task, attempt: Attempt, status: AttemptStatus) -> None:
        """Keep what an ended attempt showed as a memory note (`[memory] learn`)."""
        if not self.config.memory.learn:
            return
        try:
            memory.learn_from_attempt(self.store, task, attempt, str(status.outcome), status.summary,
                                      status.checks)
        except ClawError as error:  # a lesson lost is not worth stopping the fleet for
            self.on_event(f"task {task.id}: could not keep what attempt {attempt.number} showed: {error}")

    def _decide(self, task: Task, attempt: Attempt, status: AttemptStatus, event: str,
                event_data: dict[str, Any]) -> None:
        """Move the task where the policy sends an attempt that ended with `status`."""
        attempts_so_far = len(self.store.attempts(task_id=task.id))
        risk = None
        if status.outcome == AttemptState.ready and status.head_commit:
            risk = risk_of(self.project, attempt.base_commit, status.head_commit, status.checks_passed)
            event_data = {**event_data, "risk": risk.score, "risk_reasons": risk.reasons}
        decision = decide(task, status, attempts_so_far, self.config, risk)
        # Marked in the same step, so a restart finds the review owed; the person is told only
        # if the reviewer leaves it to them.
        # An auto-approval's attempt is approved in the same step too: the merge queue lands
        # approved attempts only, and a kill in between left an approved task that never landed.
        ai_review = {"ai_review": "running"} if decision.ai_review else {}
        self.store.finish_attempt(attempt.id, status.outcome, event,
                                  task_state=decision.task_state, task_reason=decision.reason,
                                  task_feedback=decision.feedback, event_data=event_data or None,
                                  task_event_data=ai_review or None, then=decision.attempt_state,
                                  **_fields(status), **ai_review)
        faults.point("decided")
        if decision.ai_review:
            decision = self._ai_review(task, attempt, status, risk)
        self.on_event(f"task {task.id}: attempt {attempt.number} {status.outcome}"
                      + (" (kept, best of its batch)" if event == "attempt.kept" else "")
                      + (f" → {decision.task_state}" if decision.task_state else ""))
        if decision.task_state not in (TaskState.review, TaskState.approved):
            self._release(attempt, keep=status.outcome != AttemptState.no_change)

    def _keep_best(self, task: Task, siblings: list[Attempt], last_id: int,
                   last_status: AttemptStatus) -> tuple[Attempt, AttemptStatus, list[dict[str, Any]]]:
        """Pick the best of a best-of-N batch: checks passed first, then the lowest risk, the
        fewest fix rounds, the fewest tokens, the earliest end. The others are superseded."""
        scored = []
        for sibling in (self.store.get_attempt(s.id) for s in siblings):
            status = last_status if sibling.id == last_id else self._status_of(sibling)
            risk = None
            if status.outcome == AttemptState.ready and status.head_commit:
                risk = risk_of(self.project, sibling.base_commit, status.head_commit, status.checks_passed)
            key = (BEST_OF_ORDER.get(status.outcome, len(BEST_OF_ORDER)), risk.score if risk else 101,
                   status.fix_rounds, status.input_tokens + status.output_tokens, status.finished_at)
            scored.append((key, sibling, status, risk))
        scored.sort(key=lambda item: item[0])
        ranking = [{"attempt": a.id, "number": a.number, "agent": a.agent, "outcome": str(st.outcome),
                    "risk": r.score if r else None} for _, a, st, r in scored]
        _, best, best_status, _ = scored[0]
        for _, loser, loser_status, _ in scored[1:]:
            self.store.finish_attempt(loser.id, AttemptState.superseded, "attempt.superseded",
                                      reason=f"attempt {best.number} of the same batch was better "
                                             f"({best_status.outcome} vs {loser_status.outcome})")
            self._release(loser, keep=loser_status.outcome != AttemptState.no_change)
        self.on_event(f"task {task.id}: best of {len(scored)}: keeps attempt {best.number} ({best.agent}); "
                      + ", ".join(f"#{r['number']} {r['outcome']}" + (f" risk {r['risk']}" if r["risk"] is not None else "")
                                  for r in ranking))
        return best, best_status, ranking

    def _status_of(self, attempt: Attempt) -> AttemptStatus:
        """How a finished attempt ended, as recorded (its runner's status file adds the checks)."""
        written = AttemptStatus.read(self.project.attempt_dir(attempt.id))
        recorded = dict(outcome=attempt.state, reason=attempt.reason, summary=attempt.summary or "",
                        head_commit=attempt.head_commit, exit_code=attempt.exit_code or 0,
                        input_tokens=attempt.input_tokens, output_tokens=attempt.output_tokens,
                        fix_rounds=attempt.fix_rounds, finished_at=attempt.finished_at or 0.0)
        return replace(written, **recorded) if written else AttemptStatus(**recorded)

    def _ai_review(self, task: Task, attempt: Attempt, status: AttemptStatus, risk: Risk) -> Decision:
        """Start the AI reviewer on a task now in review; `collect_reviews` acts on its verdict."""
        name = self.config.review.ai_reviewer
        if self.refs is not None:
            self.refs.note_activity()
        try:
            agent = self.config.agent(name)
            prompt = reviewer.review_prompt(self.project.root, task, attempt, status.head_commit, risk,
                                            status.checks_passed, in_checkout=agent.kind != "builtin")
            self.reviews.start(self._review_dir(attempt), reviewer.ReviewSpec(
                attempt_id=attempt.id, task_id=task.id, project_root=str(self.project.root),
                agent_name=name, agent=agent.model_dump(), base_commit=attempt.base_commit,
                head_commit=status.head_commit, prompt=prompt,
                deadline=self.clock() + self.config.review.ai_timeout,
                gateway_url=self.gateway.attempt_url(attempt.id) if self.gateway else None,
                gateway_key=self.gateway.attempt_key(attempt.id) if self.gateway else None,
                sandbox=self.sandbox.to_dict() if self.sandbox else None))
        except (ClawError, OSError) as error:
            self._ai_review_failed(task, attempt, error)
            return Decision(TaskState.review)
        reason = f"the AI reviewer ({name}, {agent.kind}) is looking at it"
        self.store.note_task(task.id, reason, "review.ai_started", reviewer=name)
        self.on_event(f"task {task.id}: {reason}")
        return Decision(TaskState.review, reason)

    def _review_dir(self, attempt: Attempt) -> Path:
        return self.project.attempt_dir(attempt.id) / "review"

    def collect_reviews(self) -> int:
        """Act on each AI review that ended; return how many did."""
        ended = 0
        for attempt in self.store.attempts(ai_review="running"):
            review_dir = self._review_dir(attempt)
            task = self.store.get_task(attempt.task_id)
            decided = task.state != TaskState.review or attempt.state != AttemptState.ready
            result = self.reviews.poll(attempt.id, review_dir)
            if isinstance(result, reviewer.Reviewing):
                deadline = self.reviews.deadline(review_dir)
                late = deadline is None or self.clock() > deadline + HARD_KILL_GRACE_S
                if not (decided or late):
                    continue
                self.reviews.stop(attempt.id, review_dir)
                result = ClawError(f"the AI reviewer took longer than review.ai_timeout "
                                   f"({self.config.review.ai_timeout:g} s)")
            ended += 1
            self.project.redactor.tree(review_dir, skip=("checkout",))  # its logs, as an attempt's
            if decided:  # a person (or a cancel) was quicker: the verdict no longer matters
                self.store.update_attempt(attempt.id, ai_review="late")
                continue
            self._import_notes(task, attempt, review_dir / reviewer.AGENT_DIR / memory.OUTBOX_DIR, ("review",))
            if isinstance(result, ClawError):
                self._ai_review_failed(task, attempt, result)
                continue
            self.store.update_attempt(attempt.id, ai_review=result.verdict)
            self._after_ai_review(task, attempt, result)
        return ended

    def _ai_review_failed(self, task: Task, attempt: Attempt, error: Exception) -> None:
        self.store.update_attempt(attempt.id, ai_review="failed")
        self.store.note_task(task.id, f"AI review failed, a person decides: {error}", "review.ai_failed")
        self.on_event(f"task {task.id}: AI review failed: {error}")

    def _after_ai_review(self, task: Task, attempt: Attempt, verdict: reviewer.Verdict) -> None:
        attempts_so_far = len(self.store.attempts(task_id=task.id))
        decision = after_ai_review(verdict, attempts_so_far, self.config, policy_files_of(self.project, attempt))
        self.on_event(f"task {task.id}: {verdict.describe()}")
        if decision.task_state == TaskState.approved:
            self.store.finish_attempt(attempt.id, AttemptState.approved, "attempt.approved",
                                      task_state=TaskState.approved, task_reason=decision.reason,
                                      event_data={"by": "ai", "comments": verdict.comments})
        elif decision.task_state == TaskState.queued:
            self.store.finish_attempt(attempt.id, AttemptState.sent_back, "attempt.sent_back",
                                      task_state=TaskState.queued, task_reason=decision.reason,
                                      task_feedback=decision.feedback, feedback=decision.feedback,
                                      event_data={"by": "ai", "comments": verdict.comments})
            self._release(attempt, keep=True)
        else:
            self.store.note_task(task.id, decision.reason, "review.ai", comments=verdict.comments,
                                 attempt_id=attempt.id)

    def _release(self, attempt: Attempt, keep: bool) -> None:
        """Free the worktree of an attempt that will not land; keep its branch unless empty.

        Whatever a killed agent left uncommitted is committed on the branch first: nothing is lost.
        A worktree the attempt no longer holds (best-of-N frees a loser's when it ends) is left
        alone: it may be another attempt's by now, and committing there would put that tree on
        this attempt's branch.
        """
        held = bool(attempt.worktree) and self.pool.holds(Path(attempt.worktree), attempt.id)
        if keep and held and Path(attempt.worktree).exists():
            try:
                git.commit_all(Path(attempt.worktree), f"clawfleet attempt {attempt.id}: work left when it stopped",
                               branch=attempt.branch, repo=self.project.root)
            except git.WorktreeTampered as error:  # the pool quarantines it below
                self.on_event(f"attempt {attempt.id}: its workspace is quarantined: {error.message}")
            except ClawError as error:
                self.on_event(f"attempt {attempt.id}: could not commit what it left: {error}")
        if held:
            self.pool.release(Path(attempt.worktree), recycle_at=self.project.target_tip())
        if not keep:
            git.delete_branch(self.project.root, attempt.branch)

    def land(self) -> None:
        """Land what is approved; while the merge waits (a dirty checkout), look again every
        few seconds instead of every tick, and say why only when the reason changes."""
        if self._merge_waiting and self.clock() - self._merge_waiting[1] < MERGE_RETRY_S:
            return
        results = self.merge_queue.land_all()
        waiting = {r.describe() for r in results if r.outcome == "waiting"}
        self._merge_waiting = (waiting, self.clock()) if waiting else None

    def _landed(self, result: LandResult) -> None:
        if result.outcome == "waiting" and self._merge_waiting and result.describe() in self._merge_waiting[0]:
            return
        self.on_event(result.describe().splitlines()[0])


def _fields(status: AttemptStatus) -> dict[str, Any]:
    """The attempt columns a run's status sets."""
    return dict(reason=status.reason, summary=status.summary, exit_code=status.exit_code,
                head_commit=status.head_commit, input_tokens=status.input_tokens,
                output_tokens=status.output_tokens, checks_passed=status.checks_passed,
                fix_rounds=status.fix_rounds, session=status.session)
