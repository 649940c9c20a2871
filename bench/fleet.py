#!/usr/bin/env python3
"""Fleet benchmark: how close `claw run` comes to the ideal, and what a pooled workspace saves.

    python bench/fleet.py            # the full benchmark (a minute or two)
    python bench/fleet.py --quick    # a small version, for a smoke check in seconds
    python bench/fleet.py --json     # the figures as JSON on stdout
    python bench/fleet.py --strict   # exit with status 1 when a target is missed

Everything is real: repositories are made in a temporary folder, agents are bash scripts run
by `python -m clawfleet.runner` processes, git is the real program. Each figure is measured in
the same run as its baseline:

1. fleet efficiency  ideal makespan (tasks × agent seconds / slots) ÷ wall time of
                     `Orchestrator(project, slots, merge=False).run()`        target >= 0.95
                     (the makespan with merging on is shown for information)
2. overhead/attempt  (attempt.ready event − attempt started_at) − the agent's own run time,
                     p50 and p90 over the attempts of run 1                   target p50 <= 200 ms
3. pooled hand-out   median `WorkspacePool.acquire` from a filled pool ÷ median
                     `git worktree add -b` of the same repository              target <= 0.3

Alongside the figures it prints where each attempt's time went (orchestrator start, runner boot,
runner before/after the agent, collection latency) so a miss can be traced to a phase.
Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import clawfleet  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clawfleet import git
from clawfleet.models import Importance, TaskState
from clawfleet.orchestrator import Orchestrator
from clawfleet.project import Project, initialize
from clawfleet.workspace import WorkspacePool

# Commits made in the benchmark's repositories must not depend on the person's git identity.
BENCH_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                 "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


@dataclass
class Settings:
    tasks: int
    slots: int
    agent_seconds: float
    files: int
    reps: int

    @property
    def ideal(self) -> float:
        return self.tasks * self.agent_seconds / self.slots


FULL = Settings(tasks=32, slots=8, agent_seconds=2.0, files=10_000, reps=5)
QUICK = Settings(tasks=8, slots=4, agent_seconds=0.5, files=2_000, reps=3)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None          # e.g. ">= 0.95"; None: for information only
    baseline: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        op, limit = self.target.split()
        return self.value >= float(limit) if op == ">=" else self.value <= float(limit)


# -- helpers ----------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class PhaseTimer:
    """Wraps methods of live objects (not their classes) to record how long each call took."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float, tuple]]] = {}

    def wrap(self, owner: object, method: str, label: str) -> None:
        original = getattr(owner, method, None)
        if original is None:  # the library moved on; measure what is still there
            return
        calls = self.calls.setdefault(label, [])

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                calls.append((started, time.time(), args))

        setattr(owner, method, timed)

    def total(self, label: str) -> float:
        return sum(end - start for start, end, _ in self.calls.get(label, []))

    def count(self, label: str) -> int:
        return len(self.calls.get(label, []))


def make_repo(path: Path, files: dict[str, str]) -> None:
    git.init_repo(path, files, message="bench: initial commit")


def make_project(path: Path, *, slots: int, pool_size: int, agent: str | None = None,
                 observed: Path | None = None) -> Project:
    """The bench's project: sandboxed as by default, its agents' stamps folder writable."""
    initialize(path)
    agents = f'\n[agents.sleeper]\nkind = "command"\ncommand = ["{agent}"]\n' if agent else ""
    (path / ".claw" / "config.toml").write_text(textwrap.dedent(f"""\
        [fleet]
        slots = {slots}
        default_agent = "sleeper"
        attempt_timeout = 600
        max_attempts = 1
        pool_size = {pool_size}
        [checks]
        commands = []
        [review]
        auto_approve = ["low", "normal"]
        [sandbox]
        writable = {json.dumps([str(observed)] if observed else [])}
        """) + agents)
    return Project(path)


def write_agent(folder: Path, seconds: float, stamps: Path) -> str:
    """A bash agent that works for `seconds`, writes one file and records its own start and end."""
    path = folder / "sleeper.sh"
    path.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        set -eu
        start=$EPOCHREALTIME
        sleep {seconds}
        echo "task $CLAW_TASK_ID" > "task-$CLAW_TASK_ID.txt"
        echo "$start $EPOCHREALTIME" > "{stamps}/$CLAW_ATTEMPT_ID"
        """))
    path.chmod(0o755)
    return str(path)


# -- 1 and 2: the fleet ------------------------------------------------------------------

@dataclass
class FleetRun:
    makespan: float
    attempts: list[dict[str, float]]   # per attempt: timestamps of each phase boundary
    outcomes: dict[str, int]
    timer: PhaseTimer


def run_fleet(root: Path, settings: Settings, *, merge: bool) -> FleetRun:
    repo, stamps = root / "repo", root / "stamps"
    stamps.mkdir(parents=True)
    make_repo(repo, {"README.md": "# fleet bench\n", "app.txt": "one\n"})
    agent = write_agent(root, settings.agent_seconds, stamps)
    project = make_project(repo, slots=settings.slots, pool_size=settings.slots, agent=agent, observed=stamps)
    for number in range(1, settings.tasks + 1):
        project.store.add_task(f"bench task {number}", importance=Importance.normal)

    orchestrator = Orchestrator(project, slots=settings.slots, merge=merge)
    timer = PhaseTimer()
    for owner, method, label in [
            (orchestrator, "collect", "collect"), (orchestrator, "schedule", "schedule"),
            (orchestrator, "start", "start"), (orchestrator.pool, "acquire", "pool.acquire"),
            (orchestrator.pool, "fill", "pool.fill"), (orchestrator.pool, "release", "pool.release"),
            (orchestrator.executor, "start", "executor.start"),
            (orchestrator.merge_queue, "land_all", "merge.land_all"),
            (orchestrator.merge_queue, "land", "merge.land")]:
        timer.wrap(owner, method, label)

    started = time.time()
    orchestrator.run()
    makespan = time.time() - started

    spawned = {args[0]: end for _, end, args in timer.calls.get("executor.start", [])}
    events = project.store.events()
    ended = {e["attempt_id"]: e["at"] for e in events if e["kind"] == "attempt.ready"}
    attempts = []
    for attempt in project.store.attempts():
        folder = project.attempt_dir(attempt.id)
        stamp = stamps / str(attempt.id)
        if attempt.id not in ended or not stamp.exists():
            continue
        agent_start, agent_end = map(float, stamp.read_text().split())
        attempts.append({
            "id": attempt.id,
            "started": attempt.started_at,                        # store.start_attempt
            "spawned": spawned.get(attempt.id, attempt.started_at),  # executor.start returned
            "runner_up": _mtime(folder / "runner.pid"),           # runner imported and in main()
            "agent_start": agent_start, "agent_end": agent_end,
            "status": _mtime(folder / "status.json"),             # runner finished
            "ready": ended[attempt.id],                           # orchestrator collected it
        })
    outcomes: dict[str, int] = {}
    for task in project.store.list_tasks():
        outcomes[str(task.state)] = outcomes.get(str(task.state), 0) + 1
    project.store.close()
    return FleetRun(makespan, attempts, outcomes, timer)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("nan")


PHASES = [
    ("orchestrator start", "started", "spawned",
     "store row → pool.acquire → spec.json → Popen of the runner"),
    ("runner boot", "spawned", "runner_up", "fork from the zygote (a new Python when it is not there)"),
    ("runner before agent", "runner_up", "agent_start", "spec, config, prompt, bash start"),
    ("runner after agent", "agent_end", "status", "git add/commit/rev-list, status.json"),
    ("collect latency", "status", "ready", "status.json written → attempt.ready event"),
]


def phase_medians(attempts: list[dict[str, float]]) -> list[tuple[str, float, float, str]]:
    rows = []
    for name, begin, end, what in PHASES:
        values = [a[end] - a[begin] for a in attempts if a[end] == a[end] and a[begin] == a[begin]]
        if values:
            rows.append((name, statistics.median(values) * 1000, percentile(values, 90) * 1000, what))
    return rows


def fleet_figures(root: Path, settings: Settings) -> tuple[list[Figure], dict[str, Any]]:
    plain = run_fleet(root / "no-merge", settings, merge=False)
    merged = run_fleet(root / "merge", settings, merge=True)
    expected = {str(TaskState.approved): settings.tasks}
    if plain.outcomes != expected:
        raise SystemExit(f"bench: the fleet run did not approve every task: {plain.outcomes}")
    if merged.outcomes != {str(TaskState.merged): settings.tasks}:
        raise SystemExit(f"bench: the merging run did not land every task: {merged.outcomes}")

    efficiency = settings.ideal / plain.makespan
    overheads = [((a["ready"] - a["started"]) - (a["agent_end"] - a["agent_start"])) * 1000
                 for a in plain.attempts]
    figures = [
        Figure("fleet efficiency", efficiency, "", ">= 0.95",
               baseline=f"ideal {settings.ideal:.2f} s ({settings.tasks}×{settings.agent_seconds:g} s"
                        f" / {settings.slots} slots), makespan {plain.makespan:.2f} s",
               detail={"makespan_s": plain.makespan, "ideal_s": settings.ideal}),
        Figure("makespan with merging (info)", merged.makespan, "s", None,
               baseline=f"efficiency {settings.ideal / merged.makespan:.3f}",
               detail={"efficiency": settings.ideal / merged.makespan}),
        Figure("overhead per attempt p50", statistics.median(overheads), "ms", "<= 200",
               baseline=f"{len(overheads)} attempts, agent time excluded",
               detail={"p90_ms": percentile(overheads, 90), "max_ms": max(overheads)}),
        Figure("overhead per attempt p90 (info)", percentile(overheads, 90), "ms", None),
    ]
    timer = plain.timer
    profile = {
        "phases_ms": [{"phase": n, "p50": p50, "p90": p90, "what": w}
                      for n, p50, p90, w in phase_medians(plain.attempts)],
        "orchestrator_s": {label: {"calls": timer.count(label), "total_s": timer.total(label)}
                           for label in timer.calls},
        "merge_orchestrator_s": {label: {"calls": merged.timer.count(label),
                                         "total_s": merged.timer.total(label)}
                                 for label in merged.timer.calls},
    }
    return figures, profile


# -- 3: pooled workspace hand-out --------------------------------------------------------

def make_big_repo(path: Path, files: int) -> None:
    """`files` small files in folders of 100, one commit; written directly, not through Python git."""
    path.mkdir(parents=True)
    for number in range(files):
        folder = path / f"dir{number // 100:03d}"
        if number % 100 == 0:
            folder.mkdir()
        (folder / f"file{number % 100:03d}.txt").write_text(f"file {number}\n")
    for args in (["init", "--quiet", "-b", "main"], ["add", "--all"],
                 ["commit", "--quiet", "-m", "bench: many files"]):
        subprocess.run(["git", *args], cwd=path, check=True, timeout=300)


def pool_figure(root: Path, settings: Settings) -> Figure:
    repo = root / "big"
    make_big_repo(repo, settings.files)
    project = make_project(repo, slots=1, pool_size=settings.reps)
    base = project.target_tip()
    pool = WorkspacePool(project, size=settings.reps)
    pool.fill(base)  # outside the timing: a pool that `claw run` keeps filled
    time.sleep(1.1)  # a pool is filled ahead of use; don't time git's racy-index re-checks
    plain_dir = root / "plain"
    plain_dir.mkdir()

    def hand_out(number: int) -> None:
        pool.acquire(number, f"claw/pooled-{number}", base)

    def worktree_add(number: int) -> None:
        subprocess.run(["git", "worktree", "add", "--quiet", "-b", f"plain-{number}",
                        str(plain_dir / str(number)), base], cwd=repo, check=True, timeout=300)

    pooled: list[float] = []
    plain: list[float] = []
    for number in range(settings.reps):
        # Interleaved in ABBA order so drift hits both the same way; the disk is synced before
        # each timing so neither pays for writing back the files the other one checked out.
        order = [(hand_out, pooled), (worktree_add, plain)]
        for action, times in order if number % 2 == 0 else reversed(order):
            os.sync()
            started = time.perf_counter()
            action(number)
            times.append(time.perf_counter() - started)
    project.store.close()
    ratio = statistics.median(pooled) / statistics.median(plain)
    return Figure("pooled hand-out / git worktree add", ratio, "", "<= 0.3",
                  baseline=f"{settings.files:,} files: acquire {statistics.median(pooled) * 1000:.0f} ms"
                           f" vs worktree add {statistics.median(plain) * 1000:.0f} ms"
                           f" (medians of {settings.reps})",
                  detail={"acquire_ms": [x * 1000 for x in pooled],
                          "worktree_add_ms": [x * 1000 for x in plain]})


# -- output -----------------------------------------------------------------------------

def show(figures: list[Figure], profile: dict[str, Any], settings: Settings, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title=f"clawfleet fleet benchmark ({settings.tasks} tasks × "
                        f"{settings.agent_seconds:g} s, {settings.slots} slots; "
                        f"{settings.files:,} files)")
    for column in ("figure", "measured", "target", "result", "baseline / detail"):
        table.add_column(column, overflow="fold")
    for figure in figures:
        value = f"{figure.value:.3f}" if not figure.unit else f"{figure.value:.2f} {figure.unit}"
        if figure.unit == "ms":
            value = f"{figure.value:.0f} ms"
        result = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: "[dim]info[/]"}[figure.passed]
        table.add_row(figure.name, value, figure.target or "", result, figure.baseline)
    console.print(table)

    phases = Table(title="where an attempt's time goes (run without merging)")
    for column in ("phase", "p50 ms", "p90 ms", "covers"):
        phases.add_column(column)
    for row in profile["phases_ms"]:
        phases.add_row(row["phase"], f"{row['p50']:.0f}", f"{row['p90']:.0f}", row["what"])
    console.print(phases)

    loop = Table(title="orchestrator process: time inside each call (whole run)")
    for column in ("call", "no merge: calls", "total s", "merge: calls", "total s"):
        loop.add_column(column)
    labels = list(dict.fromkeys([*profile["orchestrator_s"], *profile["merge_orchestrator_s"]]))
    for label in labels:
        a = profile["orchestrator_s"].get(label, {"calls": 0, "total_s": 0.0})
        b = profile["merge_orchestrator_s"].get(label, {"calls": 0, "total_s": 0.0})
        loop.add_row(label, str(a["calls"]), f"{a['total_s']:.2f}", str(b["calls"]), f"{b['total_s']:.2f}")
    console.print(loop)
    console.print(f"[dim]benchmark took {elapsed:.0f} s[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version for a smoke check")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--slots", type=int)
    parser.add_argument("--agent-seconds", type=float)
    parser.add_argument("--files", type=int)
    parser.add_argument("--reps", type=int)
    parser.add_argument("--dir", type=Path, help="make the temporary folder here (default: $TMPDIR or /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    settings = Settings(**asdict(QUICK if args.quick else FULL))
    for name in ("tasks", "slots", "agent_seconds", "files", "reps"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if shutil.which("git") is None:
        print("bench: git is not installed", file=sys.stderr)
        return 1
    os.environ.update(BENCH_GIT_ENV)

    began = time.time()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="claw-bench-", dir=args.dir))
    try:
        figures, profile = fleet_figures(root, settings)
        figures.append(pool_figure(root, settings))
    finally:
        if args.keep:
            print(f"bench: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.time() - began

    if args.json:
        print(json.dumps({
            "settings": asdict(settings),
            "figures": [{"name": f.name, "value": f.value, "unit": f.unit, "target": f.target,
                         "passed": f.passed, "baseline": f.baseline, **f.detail} for f in figures],
            "profile": profile, "elapsed_s": elapsed}, indent=1))
    else:
        show(figures, profile, settings, elapsed)
    missed = [f.name for f in figures if f.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
