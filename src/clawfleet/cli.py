"""The `claw` command line: parses, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

try:  # typer vendors click since 0.16
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:
    from click.exceptions import ClickException
    from click.exceptions import UsageError as ClickUsageError
from rich.live import Live
from rich.table import Table

from . import __version__, git
from .commands import daemon as daemon_commands
from .commands._common import (
    ID_RANGE,
    JsonOption,
    ago,
    console,
    err_console,
    open_project,
    print_json,
)
from .commands.memory import app as memory_app
from .commands.research import app as research_app
from .commands.skill import app as skill_app
from .commands.workspace import app as workspace_app
from .board import CLOSED
from .errors import ClawError, UsageError
from .models import AttemptState, Importance, Task, TaskState
from .printable import escape, printable
from .project import Project, initialize
from .runner import AttemptStatus
from .store import damaged

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Run a fleet of coding agents on one git repository, in parallel, and land "
                       "their work on the target branch through checks, review and a merge queue.")
TaskId = Annotated[int, typer.Argument(help="Task id, as printed by `claw add` and `claw status`.", **ID_RANGE)]

STATE_STYLE = {
    "queued": "dim", "running": "cyan", "review": "yellow", "approved": "green",
    "merged": "bold green", "resolved": "green", "failed": "red", "rejected": "red", "cancelled": "dim",
    "blocked": "magenta",
}


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'default')}]{state}[/]"


def _waiting(project: Project) -> dict[int, str]:
    from .board import waiting_reasons

    return waiting_reasons(project)


def _task_json(project: Project, task: Task, waiting: dict[int, str]) -> dict:
    data = asdict(task)
    attempt = project.store.latest_attempt(task.id)
    data["latest_attempt"] = asdict(attempt) if attempt else None
    if attempt:
        metered_tokens, cost = project.store.llm_spend(attempt_id=attempt.id)
        data["latest_attempt"].update(metered_tokens=metered_tokens, cost_usd=round(cost, 6))
    if task.state == TaskState.queued:
        data["waiting"] = waiting.get(task.id)
    elif task.state == TaskState.blocked:
        data["waiting"] = task.reason
    return data


# -- setup --------------------------------------------------------------------------------

@app.command()
def init(
    target: Annotated[Optional[str], typer.Option(help="Branch that work lands on (default: the current one).")] = None,
    check: Annotated[Optional[list[str]], typer.Option("--check", help="A check command, e.g. 'pytest -q'. Repeatable.")] = None,
) -> None:
    """Set up clawfleet in this git repository: config, AGENTS.md, SOUL.md, USER.md, git exclude."""
    from .agents import readiness

    written = initialize(Path.cwd(), target=target, checks=check)
    for path in written:
        console.print(f"[green]wrote[/] {escape(path)}")
    if not written:
        console.print("already initialised: nothing to write")
    ignored = [flag for flag, given in (("--target", target), ("--check", check)) if given]
    if ignored and ".claw/config.toml" not in written:
        console.print(f"[yellow]not applied:[/] {' and '.join(ignored)} (.claw/config.toml exists and is never "
                      "overwritten): set `target` under \\[fleet] and `commands` under \\[checks] in it")
    console.print("commit .claw/config.toml, AGENTS.md, SOUL.md and USER.md: they are this project's setup, "
                  "for everyone who runs agents on it; .claw/run/ (database, worktrees, logs) never is "
                  "(git ignores it)")
    project = Project.find()
    agent = readiness(project.config, project.config.fleet.default_agent)
    console.print(f"agent: {escape(agent.name)} ({agent.kind}), " + (escape(agent.how) if agent.ready else
                  f"[red]not ready[/]: {escape(agent.how)}"))
    console.print("change it with `default_agent` under \\[fleet] in .claw/config.toml; "
                  "`claw agents` shows which agents can run here")
    console.print("next: `claw add \"TITLE\"` to queue a task, then `claw run`")


# -- tasks --------------------------------------------------------------------------------

@app.command()
def add(
    title: Annotated[Optional[str], typer.Argument(help="What to do, in a line.")] = None,
    body: Annotated[Optional[str], typer.Option("-b", "--body", help="Details, in markdown.")] = None,
    file: Annotated[Optional[Path], typer.Option("-f", "--file", help="Markdown file: the body, or one task per `## ` section.")] = None,
    agent: Annotated[Optional[list[str]], typer.Option(help="Agent name from config (default: fleet.default_agent). "
                                                            "Repeat it with --attempts to give each attempt its own.")] = None,
    attempts: Annotated[Optional[int], typer.Option("--attempts", min=1, max=16, help="Best-of-N: run N attempts side by side and keep the best by checks, then risk (default: 1, or one per --agent).")] = None,
    model: Annotated[Optional[str], typer.Option(help="The model for this task, over its agent's config.")] = None,
    effort: Annotated[Optional[str], typer.Option(help="Reasoning effort for this task (e.g. low, high), over its agent's config.")] = None,
    priority: Annotated[int, typer.Option(min=-1_000_000, max=1_000_000, help="Higher runs first.")] = 0,
    importance: Annotated[Importance, typer.Option(help="Drives review: low tasks can be auto-approved.")] = Importance.normal,
    kind: Annotated[str, typer.Option(help="feature, fix, research, plan or experiment.")] = "feature",
    footprint: Annotated[Optional[list[str]], typer.Option("--footprint", help="Path glob the task expects to touch. Repeatable.")] = None,
    depends: Annotated[Optional[list[int]], typer.Option("--depends", help="Task id that must land first. Repeatable.", **ID_RANGE)] = None,
    check: Annotated[Optional[list[str]], typer.Option("--check", help="Extra check command for this task. Repeatable.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a task (or one per `## ` section of a file); prints the new id."""
    from .planner import queue_drafts
    from .taskfile import TaskDraft, parse_task_file, title_from_body

    if body is not None and file is not None:
        raise UsageError("give the body with -b or -f, not both")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as error:
            raise UsageError(f"cannot read {file}: {error.strerror}", hint="check the path") from None
        except UnicodeDecodeError:
            raise UsageError(f"{file} is not UTF-8 text", hint="save it as UTF-8 markdown") from None
        sections = parse_task_file(text) if title is None else []
        drafts = sections or [TaskDraft(title or title_from_body(text) or "", text)]
    else:
        drafts = [TaskDraft(title or "", body or "")]
    if any(not d.title.strip() for d in drafts):
        raise UsageError("a task needs a title", hint='claw add "Add a slugify helper" -b "details"')
    if any(not glob.strip() for glob in footprint or []):
        raise UsageError("an empty --footprint matches no file", hint="give a path glob, e.g. --footprint 'src/**'")
    project = open_project()
    agents = list(dict.fromkeys(agent or []))
    best_of = attempts or max(len(agents), 1)
    from .agents import readiness

    names = sorted({*agents, *(d.agent for d in drafts)} - {None} or {project.config.fleet.default_agent})
    for name in names:
        project.config.agent(name, model=model, effort=effort)
    if best_of > project.config.fleet.slots:
        raise UsageError(f"--attempts {best_of} needs {best_of} slots at once; the fleet has "
                         f"{project.config.fleet.slots}", hint="raise `slots` under [fleet] in .claw/config.toml, "
                                                              "or ask for fewer attempts")
    ids = queue_drafts(project.store, drafts, kind=kind, importance=importance, priority=priority,
                       agent=agents[0] if agents else None, footprint=footprint or [], checks=check or [],
                       depends_on=depends or [], best_of=best_of, agents=agents if len(agents) > 1 else [],
                       model=model, effort=effort)
    for ready in (readiness(project.config, name) for name in names):
        if not ready.ready:  # queued all the same: it may be set up before `claw run`
            err_console.print(f"[yellow]warning:[/] agent '{escape(ready.name)}' cannot run here yet: {escape(ready.how)}")
    if file is not None and title is None and not sections:
        err_console.print(f"{escape(str(file))} has no `## ` sections: queued as one task, "
                          f"'{escape(drafts[0].title)}' (a `## ` heading per task makes one each)")
    if as_json:
        print_json({"ids": ids})
    else:
        for task_id in ids:
            print(task_id)


@app.command()
def plan(
    goal: Annotated[str, typer.Argument(help="What you want done, in a sentence or two.")],
    agent: Annotated[Optional[str], typer.Option(help="Built-in agent whose model plans (default: builtin).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Queue the plan without asking.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Split a goal into macro tasks with a model; shows the plan, saves it as an editable file."""
    from .planner import plan_path, propose, queue_drafts
    from .taskfile import render_task_file

    project = open_project()
    with err_console.status("planning..."):
        drafts = propose(project, goal, agent,
                         warn=lambda message: err_console.print(f"[yellow]warning:[/] {escape(message)}"))
    path = plan_path(project, goal)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_task_file(drafts, heading=goal))
    if as_json:
        ids = queue_drafts(project.store, drafts) if yes else []
        print_json({"file": str(path), "tasks": [asdict(d) for d in drafts], "ids": ids})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("#", "task", "kind", "importance", "footprint", "after"):
        table.add_column(column)
    for number, draft in enumerate(drafts, 1):
        table.add_row(str(number), escape(draft.title), draft.kind or "feature",
                      str(draft.importance or "normal"), escape(", ".join(draft.footprint)),
                      ", ".join(map(str, draft.depends)))
    console.print(table)
    console.print(f"plan saved to {path}", soft_wrap=True)
    if not yes and not (sys.stdin.isatty() and typer.confirm("Queue these tasks?", default=False)):
        console.print(f"edit it if you like, then queue it with: claw add -f {path}", soft_wrap=True)
        return
    ids = queue_drafts(project.store, drafts)
    console.print(f"queued tasks {', '.join(map(str, ids))}: `claw run` to start them")


@app.command()
def status(
    all_tasks: Annotated[bool, typer.Option("--all", "-a", help="Include merged, rejected and cancelled tasks.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List tasks with their state, agent, time and tokens."""
    project = open_project()
    tasks = project.store.list_tasks()
    if not all_tasks:
        tasks = [t for t in tasks if t.state not in CLOSED]
    if as_json:
        waiting = _waiting(project)
        print_json([_task_json(project, t, waiting) for t in tasks])
        return
    console.print(daemon_commands.daemon_line(project))
    unsandboxed = _unsandboxed_reason(project)
    if unsandboxed:
        console.print(f"[bold red]UNSANDBOXED:[/] {escape(unsandboxed)}")
    _print_security(project)
    if not tasks:
        console.print("no tasks" + ("" if all_tasks else " open (`claw status --all` shows landed ones)"))
        return
    console.print(_task_table(project, tasks))
    _print_collisions(project)


def _unsandboxed_reason(project: Project) -> str | None:
    """Why agents run unsandboxed here ([sandbox] says so, or bwrap cannot run), or None."""
    from . import sandbox
    config = project.config.sandbox
    if config.enabled is False:
        return "[sandbox] enabled = false: agents run as you, with your files, keys and network"
    path, why = sandbox.probe()
    if path is None:
        return f"{why}: agents run as you ({sandbox.INSTALL_HINT})"
    return None


def _print_security(project: Project) -> None:
    from .refwatch import status_lines

    for line in status_lines(project):
        console.print(f"[bold red]security:[/] {escape(line)}")


def _print_collisions(project: Project) -> None:
    from .board import conflicts_ahead

    for line in conflicts_ahead(project):
        console.print(f"[yellow]conflict ahead:[/] {escape(line)}")


def _task_table(project: Project, tasks: list[Task]) -> "_TaskBoard":
    from .board import task_rows

    table = Table(box=None, pad_edge=False)
    for column in ("id", "task", "agent", "state", "elapsed", "tokens", "cost"):
        # One line per task (a long title ends in "…"), so its note can go on the line under it.
        table.add_column(column, no_wrap=True, overflow="ellipsis",
                         justify="right" if column in ("id", "tokens", "cost", "elapsed") else "left")
    # Tokens as the agent counts them, live; cost as the gateway metered it (blank without it).
    rows = task_rows(project, tasks)
    for row in rows:
        state = _styled(TaskState(row.state)) + (f" [dim]{row.phase}[/]" if row.phase else "")
        table.add_row(str(row.id), escape(row.title), escape(row.agent), state,
                      ago(row.elapsed_s) if row.elapsed_s is not None else "",
                      f"{row.tokens:,}" if row.tokens else "", f"${row.cost:.4f}" if row.cost is not None else "")
    return _TaskBoard(table, [(row.id, row.note) for row in rows])


class _TaskBoard:
    """The task table with each task's note on a line of its own under its row, as wide as the
    screen: cut with "…" where it does not fit (never mid-cell, six lines deep), and a pointer
    to `claw show ID`, which prints it in full."""

    def __init__(self, table: Table, notes: list[tuple[int, str]]) -> None:
        self.table, self.notes = table, notes

    def __rich_console__(self, console, options):
        from rich.segment import Segment
        from rich.text import Text

        # The title gives way: every other column keeps its width, the title gets what is left.
        task = self.table.columns[1]
        others = sum(max(Text.from_markup(str(cell)).cell_len for cell in [column.header, *column.cells])
                     for column in self.table.columns if column is not task)
        task.max_width = max(12, options.max_width - others - 2 * (len(self.table.columns) - 1))
        lines = console.render_lines(self.table, options, pad=False)
        whole = options.overflow == "ignore"  # no terminal: nothing is cut, a log keeps it all
        cut = None
        for index, line in enumerate(lines):
            yield from line
            yield Segment.line()
            task_id, note = self.notes[index - 1] if 0 < index <= len(self.notes) else (0, "")
            if note:
                first = note.strip().splitlines()[0]
                text = Text(f"   └ {first}", style="dim", no_wrap=True, overflow="ignore" if whole else "ellipsis")
                if len(note.strip().splitlines()) > 1 or (not whole and text.cell_len > options.max_width):
                    cut = task_id
                yield from console.render(text, options)
        if cut is not None:
            yield from console.render(Text(f"(a note in full: `claw show ID`, e.g. `claw show {cut}`)",
                                           style="dim"), options)


@app.command()
def ui() -> None:
    """The fleet live in the terminal: tasks, phases, tokens, cost, events; approve, send back, reject."""
    from .tui import FleetApp

    if not sys.stdout.isatty():
        raise UsageError("claw ui needs a terminal", hint="use `claw status` or `claw status --json` in scripts")
    FleetApp(open_project()).run()


@app.command()
def show(task_id: TaskId, as_json: JsonOption = False) -> None:
    """Show a task: its body, attempts, check results and history."""
    from .review import changes_policy, policy_files_of

    project = open_project()
    task = project.store.get_task(task_id)
    attempts = project.store.attempts(task_id=task_id)
    events = project.store.events(task_id=task_id)
    checks = {}
    for attempt in attempts:
        status = AttemptStatus.read(project.attempt_dir(attempt.id))
        checks[attempt.id] = status.checks if status else []
    # The latest attempt's policy files, first: a person must approve them. (A landed one's head
    # is its rebased commit, so base..head would hold what others landed meanwhile.)
    latest = project.store.latest_attempt(task_id)
    policy = policy_files_of(project, latest) if latest and latest.state != AttemptState.merged else []
    if as_json:
        print_json({**asdict(task), "policy_files": policy,
                    "attempts": [{**asdict(a), "checks": checks[a.id]} for a in attempts], "events": events})
        return
    if policy:
        console.print(f"[bold red]warning: {escape(changes_policy(policy))}: a person must approve it[/]")
    console.print(f"[bold]task {task.id}[/]: {escape(task.title)}  {_styled(task.state)}")
    console.print(f"kind {escape(task.kind)} · importance {task.importance} · priority {task.priority}"
                  + (f" · depends on {', '.join(map(str, task.depends_on))}" if task.depends_on else ""))
    if task.reason:
        console.print(f"reason: {escape(task.reason)}")
    if task.resolves:
        console.print(f"resolves task {task.resolves}")
    if task.resolved_by:
        console.print(f"resolved by task {task.resolved_by}")
    if task.merge_wait and task.state == TaskState.approved:
        console.print(f"merge waits: {escape(task.merge_wait)}")
    if task.body:
        console.print(escape(task.body.strip()))
    for attempt in attempts:
        console.print(f"\n[bold]attempt {attempt.number}[/] (#{attempt.id}) {escape(attempt.agent)} "
                      f"{_styled(attempt.state)} on {escape(attempt.branch)}"
                      f" from {attempt.base_commit[:10]}")
        if attempt.summary:
            console.print(f"  summary: {escape(attempt.summary)}")
        if attempt.reason:
            console.print(f"  reason: {escape(attempt.reason.splitlines()[0])}")
        if attempt.tokens:
            console.print(f"  tokens: {attempt.input_tokens:,} in, {attempt.output_tokens:,} out")
        for check in checks[attempt.id]:
            mark = "[green]pass[/]" if check["passed"] else "[red]fail[/]"
            console.print(f"  check {mark} {escape(check['command'])} ({check['duration']:.1f}s)")
        console.print(f"  logs: {project.attempt_dir(attempt.id)}")


@app.command()
def log(
    task_id: TaskId,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing until the attempt ends.")] = False,
    number: Annotated[Optional[int], typer.Option("--attempt", min=1, help="Attempt N of the task, as `claw show` numbers them (default: the latest).")] = None,
) -> None:
    """Print the agent's log of the task's latest attempt (or of attempt N)."""
    project = open_project()
    attempt = project.latest_attempt(task_id)
    if number is not None:
        attempts = project.store.attempts(task_id=task_id)
        attempt = next((a for a in attempts if a.number == number), None)
        if attempt is None:
            raise UsageError(f"task {task_id} has no attempt {number} (it has {len(attempts)})",
                             hint=f"`claw show {task_id}` lists its attempts")
    path = project.attempt_dir(attempt.id) / "agent.log"
    position = 0
    while True:
        if path.exists():
            with open(path, errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            # A running attempt's log is redacted at its end; the agent's colours are kept, and
            # no other escape sequence of its reaches the terminal.
            sys.stdout.write(printable(project.redactor.text(chunk), colour=True))
            sys.stdout.flush()
        if not follow or project.store.get_attempt(attempt.id).state != AttemptState.running:
            break
        time.sleep(0.3)
    if not path.exists() and not follow:
        err_console.print(f"no agent log yet at {path}")


@app.command()
def diff(
    task_id: TaskId,
    stat: Annotated[bool, typer.Option("--stat", help="Only the files and line counts.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the changes of the task's latest attempt against its base commit."""
    project = open_project()
    attempt = project.latest_attempt(task_id)
    head = attempt.head_commit or git.branch_tip(project.root, attempt.branch) or attempt.base_commit
    stats = git.diff_stats(project.root, attempt.base_commit, head)
    if as_json:
        print_json({"base": attempt.base_commit, "head": head, "files": [asdict(s) for s in stats],
                     "diff": "" if stat else git.diff(project.root, attempt.base_commit, head)})
        return
    for entry in stats:
        console.print(f"{entry.added:>6} [green]+[/] {entry.deleted:>6} [red]-[/]  {escape(entry.path)}")
    if not stat:
        # What the agent wrote, its escape sequences shown, git's colours kept.
        sys.stdout.write(printable(git.diff(project.root, attempt.base_commit, head, color=console.is_terminal),
                                   colour=True))


@app.command()
def cancel(task_id: TaskId) -> None:
    """Cancel a task; a running attempt is stopped (its work so far stays on its branch)."""
    from .review import cancel as cancel_task

    cancel_task(open_project(), task_id)
    console.print(f"task {task_id} cancelled")


@app.command()
def retry(
    task_id: TaskId,
    feedback: Annotated[Optional[str], typer.Option(help="What the next attempt should do differently.")] = None,
) -> None:
    """Queue a failed, rejected or cancelled task again for a new attempt."""
    project = open_project()
    project.store.move_task(task_id, TaskState.queued, "task.retried", reason="retry requested",
                            feedback=feedback,
                            expect=[TaskState.failed, TaskState.rejected, TaskState.cancelled])
    console.print(f"task {task_id} queued again")


@app.command()
def depends(
    task_id: TaskId,
    on: Annotated[Optional[list[int]], typer.Option("--on", help="Task id that must land first. Repeatable; none: it waits for nothing.", **ID_RANGE)] = None,
) -> None:
    """Change what a queued or blocked task waits for (dropping one that gave up unblocks it)."""
    task = open_project().store.set_dependencies(task_id, on or [])
    waits = f"depends on {', '.join(map(str, task.depends_on))}" if task.depends_on else "depends on nothing"
    console.print(f"task {task.id} {waits}; {task.state}" + (f": {escape(task.reason)}" if task.state == TaskState.blocked else ""))


# -- running ------------------------------------------------------------------------------

@app.command()
def run(
    slots: Annotated[Optional[int], typer.Option(min=1, help="Agents at once (default: fleet.slots).")] = None,
    merge: Annotated[Optional[bool], typer.Option("--merge/--no-merge", help="Land approved attempts as they come (default: review.merge_on_approve).")] = None,
    ignore_footprints: Annotated[bool, typer.Option("--ignore-footprints", help="Run tasks together even when their footprints overlap.")] = False,
) -> None:
    """Run queued tasks in parallel until nothing runnable is left."""
    project = open_project()
    started = time.time()
    _run_fleet(project, slots=slots, merge=merge, respect_footprints=False if ignore_footprints else None)
    _print_run_summary(project, started)


def _refuse_unready_agents(project: Project) -> None:
    """Before anything starts: every agent the queued tasks will use can run here, or one clear
    error says which cannot and what to do (nothing is started, every task stays queued)."""
    from .agents import readiness

    default = project.config.fleet.default_agent
    names = sorted({name for task in project.store.list_tasks([TaskState.queued])
                    for name in task.attempt_agents(default)})
    unready = [r for r in (readiness(project.config, name) for name in names) if not r.ready]
    if unready:
        raise ClawError("; ".join(f"agent '{r.name}' ({r.kind}) cannot run: {r.how}" for r in unready),
                        hint="fix it and run again (your tasks stay queued); `claw agents` shows every "
                             "configured agent; to try offline: `claw fake-llm --script FILE`, then point "
                             "the agent's base_url at the URL it prints")


def _run_fleet(project: Project, *, slots: int | None, merge: bool | None,
               respect_footprints: bool | None = None) -> None:
    """Drive the orchestrator with a live table on a terminal, event lines elsewhere."""
    from .orchestrator import Orchestrator

    from . import sandbox

    project.target_tip()   # a bad target is the first thing to say, then a sandbox it needs
    sandbox.resolve(project.config.sandbox, warn=lambda message: None)
    _refuse_unready_agents(project)

    events: list[str] = []
    live_mode = console.is_terminal
    started = time.time()

    def on_event(message: str) -> None:
        if live_mode:
            events.append(f"{ago(time.time() - started):>6}  {message}")
        else:
            console.print(f"{ago(time.time() - started):>6}  {escape(message)}")

    orchestrator = Orchestrator(project, slots=slots, merge=merge, on_event=on_event,
                                respect_footprints=respect_footprints)
    if not live_mode:
        orchestrator.run()
        return
    with Live(console=console, refresh_per_second=4) as live:
        last = 0.0

        def refresh(force: bool = False) -> None:
            nonlocal last
            if force or time.monotonic() - last >= 0.25:  # the loop ticks faster than eyes read
                live.update(_live_view(project, events, started))
                last = time.monotonic()
        orchestrator.run(on_tick=refresh)
        refresh(force=True)


def _live_view(project: Project, events: list[str], started: float):
    from rich.console import Group

    active = [t for t in project.store.list_tasks()
              if t.state in (TaskState.running, TaskState.queued) or t.updated_at >= started]
    return Group(_task_table(project, active), *[escape(e) for e in events[-6:]])


def _print_run_summary(project: Project, started: float) -> None:
    tasks = [t for t in project.store.list_tasks() if t.updated_at >= started]
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    from .board import still_waiting

    waits = still_waiting(project)
    console.print(f"done in {ago(time.time() - started)}: "
                  f"{summary or ('nothing could run' if waits else 'nothing to run')}")
    for line in waits:
        console.print(f"  {escape(line)}")
    if counts.get("review"):
        console.print("`claw review` to decide on what waits for you")


@app.command()
def conflicts(as_json: JsonOption = False) -> None:
    """Predict which running or finished attempts will collide, and on which files (read-only)."""
    from . import radar

    project = open_project()
    report = radar.scan(project)
    if as_json:
        print_json(asdict(report))
        return
    if not report.collisions:
        console.print(f"no conflicts ahead among {len(report.touched)} live attempt(s)")
    for collision in report.collisions:
        console.print(f"[yellow]conflict ahead:[/] {escape(collision.describe(project.config.fleet.target))}")


# -- review and merge ---------------------------------------------------------------------

@app.command()
def approve(task_id: TaskId) -> None:
    """Approve the attempt that waits for review; `claw merge` (or `claw run`) lands it."""
    from .review import approve as approve_attempt

    approve_attempt(open_project().store, task_id)
    console.print(f"task {task_id} approved")


@app.command()
def reject(
    task_id: TaskId,
    feedback: Annotated[Optional[str], typer.Option(help="Send it back: a new attempt gets this feedback.")] = None,
    ai_feedback: Annotated[bool, typer.Option("--ai-feedback", help="Send it back with the AI reviewer's comments as the feedback.")] = False,
) -> None:
    """Reject the attempt that waits for review; with --feedback, send it back for a new attempt."""
    from .review import ai_comments, as_feedback, attempt_to_review
    from .review import reject as reject_attempt

    project = open_project()
    if ai_feedback:
        comments = ai_comments(project.store, attempt_to_review(project.store, task_id))
        if not comments:
            raise UsageError(f"the AI reviewer left no comments on task {task_id}'s attempt",
                             hint="write your own with --feedback TEXT")
        feedback = "\n\n".join(filter(None, [feedback, as_feedback(comments)]))
    reject_attempt(project, task_id, feedback)
    console.print(f"task {task_id} " + ("sent back with feedback" if feedback else "rejected"))


@app.command()
def review(as_json: JsonOption = False) -> None:
    """Go through attempts waiting for review, most important first: approve, reject or send back."""
    from .review import ai_comments, as_feedback, needs_a_person_first
    from .review import approve as approve_attempt
    from .review import reject as reject_attempt

    project = open_project()
    waiting = needs_a_person_first(project, project.store.list_tasks([TaskState.review]))
    def ai_said(task) -> tuple[str | None, list[str]]:
        attempt = project.store.latest_attempt(task.id)
        return (attempt.ai_review, ai_comments(project.store, attempt)) if attempt else (None, [])

    if as_json:
        print_json([{**_task_json(project, t, {}), "risk": asdict(risk) if risk else None,
                     "policy_files": risk.policy_files if risk else [],
                     "ai_review": ai_said(t)[0], "ai_comments": ai_said(t)[1]} for t, risk in waiting])
        return
    if not waiting:
        console.print("nothing waits for review")
        return
    interactive = sys.stdin.isatty()
    for task, risk in waiting:
        attempt = project.store.latest_attempt(task.id)
        console.rule(f"task {task.id}: {escape(task.title)} ({task.importance}"
                     + (f", {escape(risk.describe())}" if risk else "") + ")")
        show(task.id, as_json=False)
        if attempt and attempt.head_commit:
            console.print()
            diff(task.id, stat=False, as_json=False)
        state, comments = ai_said(task)
        if state == "running":
            console.print("[cyan]the AI reviewer is still reading it; its verdict may settle it[/]")
        if comments:
            console.print("[bold]the AI reviewer says:[/]\n" + "\n".join(f"  - {escape(c)}" for c in comments))
        if not interactive:
            console.print("[dim](not a terminal: decide with `claw approve ID` or `claw reject ID`)[/]")
            continue
        choice = typer.prompt("[a]pprove, [r]eject, [s]end back with feedback, s[k]ip, [q]uit",
                              default="k").strip().lower()
        if choice.startswith("a"):
            approve_attempt(project.store, task.id)
            console.print("[green]approved[/]")
        elif choice.startswith("r"):
            reject_attempt(project, task.id)
            console.print("[red]rejected[/]")
        elif choice.startswith("s"):
            text = typer.prompt("feedback", default=as_feedback(comments) if comments else None)
            reject_attempt(project, task.id, text)
            console.print("sent back: a new attempt will get your feedback")
        elif choice.startswith("q"):
            break


@app.command()
def merge(as_json: JsonOption = False) -> None:
    """Land approved attempts on the target branch: rebase, re-check, fast-forward."""
    from .mergequeue import MergeQueue
    from .orchestrator import OrchestratorLock

    project = open_project()
    with OrchestratorLock(project.run_dir):
        results = MergeQueue(project).land_all()
    if as_json:
        print_json([asdict(r) for r in results])
        return
    if not results:
        console.print("nothing approved to land")
    colour = {"merged": "green", "bounced": "red", "waiting": "yellow"}
    for result in results:
        console.print(f"[{colour[result.outcome]}]{escape(result.describe())}[/]")
    if any(r.outcome != "merged" for r in results):
        raise typer.Exit(1)


@app.command()
def agents(
    as_json: JsonOption = False,
    configured_only: Annotated[bool, typer.Option("--configured", help="Only the agents this project configures: ready or not, and why (with --json: their list).")] = False,
) -> None:
    """List the agent kinds (installed? which version?) and the agents this project configures:
    whether each can run here (program, model, key or login) and what it inherits of your setup."""
    from .agents import agent_kinds

    configured = _configured_agents()
    if configured_only:
        if configured is None:
            raise ClawError("not in a clawfleet project", hint="run `claw init` in your repository first")
        if as_json:
            print_json([asdict(r) for r in configured])
            return
    kinds = [] if configured_only else agent_kinds()
    if as_json:
        print_json([asdict(kind) for kind in kinds])
        return
    table = Table(box=None, pad_edge=False)
    for column in ("kind", "installed", "version", "what") if kinds else ():
        table.add_column(column)
    for kind in kinds:
        installed = "[green]yes[/]" if kind.installed else f"[red]no[/] [dim]({escape(kind.install or '')})[/]"
        table.add_row(kind.kind, installed, escape(kind.version or "-"), escape(kind.description))
    if kinds:
        console.print(table)
    if configured:
        ready = Table(box=None, pad_edge=False, title="configured in .claw/config.toml", title_justify="left")
        for column in ("agent", "kind", "ready", "access", "inherits"):
            ready.add_column(column, overflow="fold")
        for row in configured:
            ready.add_row(row.name, row.kind, "[green]yes[/]" if row.ready else "[red]no[/]",
                          escape(row.how), escape(", ".join(row.inherit) or "-"))
        console.print(ready)


def _configured_agents():
    """Readiness of every agent this project configures (None outside a project)."""
    from .agents import readiness
    try:
        project = Project.find()
    except ClawError:
        return None
    config = project.config  # a broken config is its own error, not "not in a project"
    names = sorted({*config.agents, config.fleet.default_agent})
    return [readiness(config, name) for name in names]


# -- offline model and demo ---------------------------------------------------------------

@app.command("fake-llm")
def fake_llm(
    script: Annotated[Path, typer.Option(help="TOML script of rules (see README: 'Scripted model').")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 0,
) -> None:
    """Serve a scripted model (OpenAI chat and Responses, Anthropic, Gemini) on 127.0.0.1, for tests and demos."""
    from .llm.scripted import Script, ScriptedServer

    server = ScriptedServer(Script.load(script), port=port)
    server.start()
    console.print(f"scripted model at {server.url}  (OpenAI base URL {server.openai_base_url}); Ctrl-C stops")
    try:
        server.wait()
    finally:
        server.stop()


@app.command()
def demo(
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Where to build the sample project (default: a temporary folder).")] = None,
    slots: Annotated[int, typer.Option(min=1, help="Agents at once.")] = 3,
) -> None:
    """Offline demo: a sample project, six tasks, three agents on a scripted model, all landed."""
    from .demo import check_target, landed_commits, prepare_demo

    started = time.time()
    demo_run = prepare_demo(directory, slots)
    project = demo_run.project
    console.print(f"[bold]clawfleet demo[/]: sample project at {project.root}")
    console.print(f"scripted model at {demo_run.server.url}; {len(project.store.list_tasks())} tasks, "
                  f"{slots} slots, built-in agent, checks: unittest\n")
    try:
        _run_fleet(project, slots=slots, merge=True)
    finally:
        demo_run.server.stop()
    tasks = project.store.list_tasks()
    merged = sum(t.state == TaskState.merged for t in tasks)
    fix_rounds = sum(a.fix_rounds for a in project.store.attempts())
    tokens = sum(a.tokens for a in project.store.attempts())
    green, test_line = check_target(demo_run)
    console.print()
    console.print(f"tasks: {merged}/{len(tasks)} landed · attempts: {len(project.store.attempts())} · "
                  f"fix rounds: {fix_rounds} · tokens: {tokens:,} · time: {time.time() - started:.1f}s")
    console.print(f"commits landed on main: {landed_commits(demo_run)} (linear, every one checked)")
    console.print("main's tests: " + ("[green]green[/]" if green else "[red]red[/]") + f" ({escape(test_line)})")
    console.print(f"look around: cd {project.root} && claw status --all && git log --oneline", soft_wrap=True)
    if merged != len(tasks) or not green:
        raise typer.Exit(1)


# -- the LLM gateway and statistics --------------------------------------------------------

gateway_app = typer.Typer(no_args_is_help=False, help="Without a command: run the metering LLM gateway "
                          "(OpenAI chat, Responses, Anthropic Messages, Gemini) on 127.0.0.1 in the foreground, "
                          "one line per model call. Commands: an attempt's key, a transcript as a script.")
app.add_typer(gateway_app, name="gateway")
app.add_typer(research_app, name="research")
app.command("up")(daemon_commands.up)
app.command("down")(daemon_commands.down)
app.add_typer(daemon_commands.notify_app, name="notify")
app.add_typer(workspace_app, name="workspace")
app.add_typer(memory_app, name="memory")
app.add_typer(skill_app, name="skill")


@gateway_app.callback(invoke_without_command=True)
def gateway(
    ctx: typer.Context,
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (default: gateway.port; 0 picks a free one).")] = None,
) -> None:
    """Run the gateway in the foreground, printing one line per model call; Ctrl-C stops."""
    if ctx.invoked_subcommand is not None:
        return
    from .llm.gateway import GatewayServer

    project = open_project()

    def on_call(call) -> None:
        cost = "" if call.cost is None else f" ${call.cost:.4f}"
        ttft = "" if call.ttft_ms is None else f", first token {call.ttft_ms:.0f} ms"
        console.print(f"attempt {call.attempt_id} {call.api} {escape(call.model)} via {escape(call.upstream)}: "
                      f"{call.status} {call.http_status or ''} {call.input_tokens:,} in, "
                      f"{call.output_tokens:,} out{cost}, {call.latency_ms:.0f} ms{ttft}"
                      + (f" [red]{escape(call.error[:120])}[/]" if call.error else ""))

    server = GatewayServer(project.root, port=project.config.gateway.port if port is None else port,
                           on_call=on_call)
    server.start()
    upstreams = ", ".join(project.config.gateway.upstreams) or "none (add [gateway.upstreams.NAME])"
    console.print(f"gateway at {server.url}  (attempt base URL {server.url}/a/TOKEN; upstreams: "
                  f"{escape(upstreams)}); Ctrl-C stops")
    try:
        server.wait()
    finally:
        server.stop()


@gateway_app.command("token")
def gateway_token(
    attempt_id: Annotated[int, typer.Argument(help="Attempt id (`claw show TASK` lists them).", **ID_RANGE)],
    port: Annotated[Optional[int], typer.Option(help="The gateway's port (default: gateway.port).")] = None,
) -> None:
    """Print an attempt's gateway key and base URL, as environment variables."""
    from .llm.gateway import KEY_PREFIX, attempt_token, load_secret

    project = open_project()
    project.store.get_attempt(attempt_id)
    token = attempt_token(load_secret(project.run_dir / "gateway.secret"), attempt_id)
    port = project.config.gateway.port if port is None else port
    print(f"CLAW_GATEWAY_URL=http://127.0.0.1:{port or 'PORT'}/a/{token}")
    print(f"CLAW_GATEWAY_KEY={KEY_PREFIX}{token}")


@gateway_app.command("script")
def gateway_script(
    transcript: Annotated[Path, typer.Argument(help="A transcript.jsonl from .claw/run/attempts/ID/.")],
) -> None:
    """Turn a recorded transcript into a scripted-model script (TOML on stdout) that replays it."""
    from .llm.transcript import read_transcript, script_from_transcript

    sys.stdout.write(script_from_transcript(read_transcript(transcript)))


@app.command("mcp")
def mcp_server(
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1 instead of stdio "
                                                      "(bearer token: $CLAW_MCP_TOKEN or .claw/run/mcp.token).")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="The HTTP port (0: any free one).")] = 8766,
) -> None:
    """Serve this repository's fleet over MCP (protocol 2025-11-25 and 2026-07-28), for any MCP
    client; e.g. `claude mcp add claw -- claw mcp`. Tools: add_task, list_tasks, task_status,
    show_task, approve, reject, status, list_skills, search_memory, add_memory."""
    from .mcp import serve, serve_http

    if http:
        serve_http(open_project(), port, announce=lambda line: err_console.print(line, highlight=False, soft_wrap=True))
    else:
        serve(open_project())


@app.command()
def stats(
    hours: Annotated[Optional[float], typer.Option(min=0, help="Only the last N hours (default: everything).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens per hour, cost, attempts by outcome, per agent kind and per task, slot utilisation."""
    from .stats import fleet_stats

    project = open_project()
    since = time.time() - hours * 3600 if hours is not None else None
    data = fleet_stats(project.store, slots=project.config.fleet.slots, since=since)
    if as_json:
        print_json(data)
        return
    if not data["attempts"]["total"]:
        console.print("no attempts yet: `claw run` starts queued tasks")
        return
    tokens, cost, slots = data["tokens"], data["cost"], data["slots"]
    outcomes = ", ".join(f"{n} {state}" for state, n in sorted(data["attempts"]["by_outcome"].items()))
    console.print(f"[bold]{data['attempts']['total']} attempts[/] over {ago(data['span']['hours'] * 3600)}: {outcomes}")
    console.print(f"tokens: {tokens['total']:,} ({tokens['per_hour']:,.0f}/hour); metered by the gateway: "
                  f"{tokens['input']:,} in ({tokens['cached']:,} cached), {tokens['output']:,} out")
    console.print(f"cost: ${cost['total']:,.4f}" + (f" ({cost['unpriced_calls']} calls of unpriced models)"
                                                    if cost["unpriced_calls"] else ""))
    if data["research"]["calls"]:
        research = data["research"]
        console.print(f"  of which research experiments: {research['calls']} calls, {research['tokens']:,} tokens, "
                      f"${research['cost']:,.4f}")
    console.print(f"slot utilisation: {slots['utilisation']:.0%} ({slots['busy_slot_seconds'] / 3600:.2f} "
                  f"busy slot-hours of {slots['slots']} slots x {data['span']['hours']:.2f} h span)")
    review = data["review"]
    if review["decided"] or review["waiting_now"]:
        line = f"review: {review['decided']} decided by a person"
        if review["decided"]:
            line += (f", waited p50 {ago(review['wait_s_p50'])}, p90 {ago(review['wait_s_p90'])}, "
                     f"max {ago(review['wait_s_max'])}")
        if review["waiting_now"]:
            line += f"; {review['waiting_now']} waiting now, the oldest for {ago(review['oldest_waiting_s'])}"
        console.print(line)
    if review["ai"]:
        spared = review["ai"].get("approve", 0) + review["ai"].get("revise", 0)
        console.print(f"AI reviewer: {spared} settled without you ("
                      + ", ".join(f"{n} {verdict}" for verdict, n in sorted(review["ai"].items())) + ")")
    if data["calls"]["total"]:
        p50 = data["calls"]["latency_ms_p50"]
        console.print(f"model calls: {data['calls']['total']} ("
                      + ", ".join(f"{n} {s}" for s, n in sorted(data["calls"]["by_status"].items()))
                      + (f"), latency p50 {p50:.0f} ms" if p50 is not None else ")"))
    for title, key in (("agent", "per_agent"), ("task (by id)", "per_task")):
        table = Table(box=None, pad_edge=False)
        for column in (title, "attempts", "outcomes", "tokens", "cost", "busy"):
            table.add_column(column, justify="right" if column in ("attempts", "tokens", "cost", "busy") else "left")
        entries = sorted(data[key].items(), key=lambda item: int(item[0]) if key == "per_task" else str(item[0]))
        for name, row in entries:
            label = f"{name} {row['title'][:40]}" if key == "per_task" else str(name)
            table.add_row(escape(label), str(row["attempts"]),
                          ", ".join(f"{n} {s}" for s, n in sorted(row["outcomes"].items())),
                          f"{row['tokens']:,}", f"${row['cost']:.4f}", ago(row["busy_s"]))
        console.print()
        console.print(table)


@app.command()
def version() -> None:
    """Print clawfleet's version."""
    print(__version__)


def _help_as_written(command) -> None:
    """Help is prose, not rich markup: `[notify]` prints as written (typer would eat it), and a
    flag shows no `<bool>` type (it takes no value)."""
    command.help = command.help and escape(command.help)
    command.short_help = command.short_help and escape(command.short_help)
    command.get_help_option(command.context_class(command))  # made (and kept) now, to drop its <bool> too
    for param in [*command.params, command._help_option]:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "is_flag", False) and param.metavar is None:  # (typer vendors click)
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _help_as_written(sub)


def _refuse_undecodable_arguments(argv: list[str]) -> None:
    """Arguments are text that goes into the store, prompts and commit messages: bytes that are
    not UTF-8 (which Python keeps as lone surrogates) can be none of these."""
    for number, argument in enumerate(argv, 1):
        if any("\udc80" <= c <= "\udcff" for c in argument):
            raise UsageError(f"argument {number} is not UTF-8 text: {printable(argument)}",
                             hint="give it as UTF-8 (e.g. convert it with `iconv -t UTF-8`)")


def _usage_error(error: ClickException) -> UsageError:
    """typer's boxed usage error as one of ours: one line, and where the command's help is."""
    ctx = getattr(error, "ctx", None)
    where = f"`{ctx.command_path} --help`" if ctx is not None else "`claw --help`"
    return UsageError(error.format_message(), hint=f"{where} says what it takes")


def _print_error(error: ClawError) -> None:
    err_console.print(f"[red]error:[/] {escape(error.message)}")
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}")


def main() -> None:
    try:
        _refuse_undecodable_arguments(sys.argv[1:])
        command = typer.main.get_command(app)
        _help_as_written(command)
        try:
            code = command(standalone_mode=False)  # errors come back to be said in one line
        except typer.Abort:
            err_console.print("[red]aborted[/]")
            sys.exit(1)
        except ClickException as error:
            if type(error).__name__ == "NoArgsIsHelpError":
                sys.exit(error.exit_code)  # the help is printed already
            raise _usage_error(error) if isinstance(error, ClickUsageError) else ClawError(error.format_message())
        sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) comes back as n
    except ClawError as error:
        _print_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted: running attempts go on; `claw run` again reattaches to them")
        sys.exit(130)
    except Exception as error:
        from . import disk

        where = disk.full_disk_of(error, Path.cwd())
        if where is None and _is_damage(error):  # a page went bad after the store was opened
            _print_error(_damaged_store(error))
            sys.exit(1)
        if where is None:
            raise
        full = disk.DiskFull(where)  # anywhere a write failed: one line, never a traceback
        err_console.print(f"[red]error:[/] {escape(full.message)}")
        err_console.print(f"[dim]hint:[/] {escape(full.hint)}")
        sys.exit(full.exit_code)


def _is_damage(error: Exception) -> bool:
    return isinstance(error, sqlite3.DatabaseError) and \
        any(words in str(error) for words in ("malformed", "not a database", "corrupt"))


def _damaged_store(error: sqlite3.DatabaseError) -> ClawError:
    try:
        path = Project.find().run_dir / "claw.db"
    except ClawError:
        path = Path(".claw/run/claw.db")
    return damaged(path, str(error))


if __name__ == "__main__":
    main()
