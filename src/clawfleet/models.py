"""The domain: tasks, attempts, their states and which state changes are allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Importance(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return list(Importance).index(self)


class TaskState(StrEnum):
    queued = "queued"        # waiting for a slot (or for its dependencies)
    blocked = "blocked"      # a dependency failed, was rejected or cancelled: see `reason`
    running = "running"      # an attempt is under way
    review = "review"        # an attempt waits for a person's decision
    approved = "approved"    # waits for the merge step
    merged = "merged"        # landed on the target branch
    resolved = "resolved"    # bounced on a conflict, then landed by the task that resolved it
    failed = "failed"        # gave up: see `reason`; `claw retry` queues it again
    rejected = "rejected"    # a person said no
    cancelled = "cancelled"


class AttemptState(StrEnum):
    running = "running"
    ready = "ready"                  # agent changed something and the checks passed
    checks_failed = "checks_failed"  # checks still red after the fix rounds
    no_change = "no_change"          # agent ended without changing anything
    failed = "failed"                # agent ended with an error
    crashed = "crashed"              # the runner died without writing its status
    timed_out = "timed_out"
    stalled = "stalled"              # no output, event or file change for [fleet] stall_timeout
    over_budget = "over_budget"      # stopped: the gateway refused a call over its budget
    cancelled = "cancelled"
    approved = "approved"
    rejected = "rejected"
    sent_back = "sent_back"          # a person asked for another attempt with feedback
    superseded = "superseded"        # best-of-N: another attempt of the same task was kept
    merged = "merged"
    bounced = "bounced"              # the merge step refused it: conflict or red checks


TASK_TRANSITIONS: dict[TaskState, set[TaskState]] = {
    TaskState.queued: {TaskState.running, TaskState.failed, TaskState.cancelled, TaskState.blocked},
    TaskState.blocked: {TaskState.queued, TaskState.cancelled},
    TaskState.running: {TaskState.review, TaskState.approved, TaskState.failed,
                        TaskState.queued, TaskState.cancelled},
    TaskState.review: {TaskState.approved, TaskState.rejected, TaskState.queued, TaskState.cancelled},
    TaskState.approved: {TaskState.merged, TaskState.failed, TaskState.cancelled},
    TaskState.merged: set(),
    TaskState.resolved: set(),
    TaskState.failed: {TaskState.queued, TaskState.cancelled, TaskState.resolved},
    TaskState.rejected: {TaskState.queued, TaskState.cancelled},
    TaskState.cancelled: {TaskState.queued},
}

# Landed on the target: by its own attempt, or by the task that resolved its conflict.
LANDED = frozenset({TaskState.merged, TaskState.resolved})
# What blocks the tasks that depend on it until it is queued again (`claw retry`).
GAVE_UP = frozenset({TaskState.failed, TaskState.rejected, TaskState.cancelled})

# The outcomes a run itself ends with (what follows, approval to merge, is a decision on it).
RUN_OUTCOMES = frozenset({AttemptState.ready, AttemptState.checks_failed, AttemptState.no_change,
                          AttemptState.failed, AttemptState.crashed, AttemptState.timed_out,
                          AttemptState.stalled, AttemptState.over_budget, AttemptState.cancelled})


def can_transition(current: TaskState, new: TaskState) -> bool:
    return new in TASK_TRANSITIONS[current]


@dataclass
class Task:
    id: int
    title: str
    body: str = ""
    kind: str = "feature"
    agent: str | None = None
    priority: int = 0
    importance: Importance = Importance.normal
    state: TaskState = TaskState.queued
    footprint: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    depends_on: list[int] = field(default_factory=list)
    feedback: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    best_of: int = 1                     # attempts run at once; the best one is kept
    model: str | None = None             # over the agent's configured model
    effort: str | None = None            # over the agent's configured reasoning effort
    agents: list[str] = field(default_factory=list)   # best-of agents, in turn (else `agent`)
    resolves: int | None = None          # the bounced task whose conflict this one resolves
    resolved_by: int | None = None       # the task that resolves this one's conflict
    merge_wait: str | None = None        # why this approved task is not landing now

    def attempt_agents(self, default: str) -> list[str]:
        """The agent of each attempt a start makes: one, or `best_of` taking `agents` in turn."""
        pool = self.agents or [self.agent or default]
        return [pool[n % len(pool)] for n in range(max(self.best_of, 1))]


@dataclass
class Attempt:
    id: int
    task_id: int
    number: int
    agent: str
    state: AttemptState = AttemptState.running
    branch: str = ""
    base_commit: str = ""
    head_commit: str | None = None
    worktree: str | None = None
    pid: int | None = None
    started_at: float = 0.0
    finished_at: float | None = None
    exit_code: int | None = None
    summary: str | None = None
    reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    checks_passed: bool | None = None
    fix_rounds: int = 0
    feedback: str | None = None
    ai_review: str | None = None        # running, then approve / revise / reject / failed
    session: str | None = None          # the agent's own session (its id), to continue it later

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Note:
    """A memory note. `source` says who wrote it: person, agent, attempt (learned after one), mcp."""
    id: int
    body: str
    source: str = "person"
    task_id: int | None = None
    attempt_id: int | None = None
    tags: list[str] = field(default_factory=list)
    created_at: float = 0.0
    score: float | None = None          # BM25 rank from a search (lower is better); None when listed


@dataclass
class LlmCall:
    """One model call through the gateway. `input_tokens` includes `cached_tokens`.

    status: ok, error (the upstream answered an error), refused (over budget), unreachable,
    timeout, malformed (the upstream's reply could not be read), incomplete (the stream ended
    early) or disconnected (the client went away mid-stream).
    """
    attempt_id: int | None             # None for a research experiment's call
    task_id: int | None
    api: str
    model: str
    upstream: str
    status: str
    started_at: float
    stream: bool = False
    experiment_id: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    http_status: int | None = None
    error: str | None = None
    id: int | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# -- research mode -----------------------------------------------------------------------

class ExperimentStatus(StrEnum):
    running = "running"
    baseline = "baseline"    # the unchanged best commit, measured first
    keep = "keep"            # beat the best: the research branch moved to it
    discard = "discard"      # no better, no change, out of scope or beaten in its round
    crash = "crash"          # the experiment failed, or its metric could not be read
    timeout = "timeout"      # killed at its time budget


@dataclass
class Experiment:
    """One try in research mode: an agent's change from `parent_commit`, run and measured."""
    id: int
    run_id: int
    name: str
    round: int
    parent_commit: str
    status: ExperimentStatus
    started_at: float
    commit_sha: str | None = None
    description: str = ""
    reason: str | None = None
    params: dict | None = None
    metric: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None
    log_tail: str | None = None
    finished_at: float | None = None


@dataclass
class ResearchRun:
    """One `claw research run`: its loop's settings and where it stands."""
    id: int
    name: str
    branch: str
    agent: str
    goal: str
    parallel: int
    state: str                 # running, finished, failed, stopped
    base_commit: str
    started_at: float
    reason: str | None = None
    pid: int | None = None
    best_commit: str | None = None
    baseline_metric: float | None = None
    best_metric: float | None = None
    finished_at: float | None = None


@dataclass
class Notification:
    """A short message for the owner: queued in the store, delivered by the notifier."""
    kind: str               # what happened: task.review, task.merged, watcher.fired...
    summary: str
    importance: Importance = Importance.normal
    event_id: int | None = None
    at: float = 0.0
    id: int | None = None
    sent_at: float | None = None
    attempts: int = 0
    error: str | None = None
