"""The commands a person gives the claw from a chat or a script, whatever the channel.

Each returns a `Reply`: text for a chat, data for a script. Bad input raises ClawError, which
each channel shows its own way. The webhook's routes and the Telegram bot's /commands both land
here, and `run_text` reads the chat form ("/reject 4 use the new API") for either.

    reply = run_text(project, "/add Fix the login page\\nIt 500s on empty passwords", source="chat")
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import git
from ..errors import ClawError, UsageError
from ..models import Importance, TaskState
from ..project import Project
from .context import persona_context

OPEN_STATES = (TaskState.queued, TaskState.running, TaskState.review, TaskState.approved, TaskState.failed)
STATUS_LINES = 20
HELP = ("Commands: /add TITLE (next lines: details) · /status · /show TASK · /approve TASK · "
        "/reject TASK [feedback: sends it back for a new attempt] · /ask QUESTION")

ASK_PROMPT = """\
You are the claw: the daemon that runs a fleet of coding agents on this repository for its owner.
Answer the owner's question briefly and plainly, in your own voice as described below, from what
you know: the files below and the fleet's state. Say so when you do not know.

{persona}

## The fleet now
{status}
"""


@dataclass
class Reply:
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def add(project: Project, title: str, body: str = "", *, kind: str = "feature",
        importance: str = "normal", source: str = "chat") -> Reply:
    title = title.strip()
    if not title:
        raise UsageError("a task needs a title", hint="/add Fix the login page")
    try:
        level = Importance(importance)
    except ValueError:
        raise UsageError(f"importance must be one of {', '.join(Importance)}, not {importance!r}") from None
    task = project.store.add_task(title[:200], body=body.strip(), kind=kind, importance=level, source=source)
    return Reply(f"queued task {task.id}: {task.title}", {"id": task.id, "title": task.title})


def status(project: Project) -> Reply:
    tasks = project.store.list_tasks()
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    open_tasks = [t for t in tasks if t.state in OPEN_STATES]
    lines = [", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no tasks yet"]
    for task in open_tasks[:STATUS_LINES]:
        lines.append(f"{task.id} [{task.state}] {task.title[:70]}")
    if len(open_tasks) > STATUS_LINES:
        lines.append(f"... and {len(open_tasks) - STATUS_LINES} more")
    return Reply("\n".join(lines), {"counts": counts, "open": [
        {"id": t.id, "title": t.title, "state": t.state, "importance": t.importance} for t in open_tasks]})


def show(project: Project, task_id: int) -> Reply:
    """A task with its latest attempt's summary and diff stats."""
    task = project.store.get_task(task_id)
    attempt = project.store.latest_attempt(task_id)
    lines = [f"task {task.id}: {task.title} [{task.state}]"]
    if task.reason:
        lines.append(f"reason: {task.reason.splitlines()[0][:200]}")
    data: dict[str, Any] = {"id": task.id, "title": task.title, "state": task.state,
                            "reason": task.reason, "attempt": None, "files": []}
    if attempt is not None:
        head = attempt.head_commit or git.branch_tip(project.root, attempt.branch) or attempt.base_commit
        stats = git.diff_stats(project.root, attempt.base_commit, head)
        added, deleted = sum(s.added for s in stats), sum(s.deleted for s in stats)
        lines.append(f"attempt {attempt.number} ({attempt.agent}) {attempt.state}: "
                     f"{len(stats)} file(s), +{added} -{deleted}")
        if attempt.summary:
            lines.append(f"summary: {attempt.summary[:500]}")
        lines += [f"  +{s.added} -{s.deleted} {s.path}" for s in stats[:15]]
        data["attempt"] = {"id": attempt.id, "number": attempt.number, "agent": attempt.agent,
                           "state": attempt.state, "summary": attempt.summary,
                           "added": added, "deleted": deleted}
        data["files"] = [asdict(s) for s in stats]
    return Reply("\n".join(lines), data)


def approve(project: Project, task_id: int, by: str = "chat") -> Reply:
    from ..review import approve as approve_attempt

    attempt = approve_attempt(project.store, task_id, by=by)
    return Reply(f"task {task_id} approved: it lands with the next merge", {"id": task_id, "attempt": attempt.id})


def reject(project: Project, task_id: int, feedback: str | None = None) -> Reply:
    from ..review import reject as reject_attempt

    feedback = (feedback or "").strip() or None
    attempt = reject_attempt(project, task_id, feedback)
    text = f"task {task_id} sent back: a new attempt gets your feedback" if feedback else f"task {task_id} rejected"
    return Reply(text, {"id": task_id, "attempt": attempt.id, "sent_back": feedback is not None})


def ask(project: Project, question: str) -> Reply:
    """Answer a question with the builtin model, the persona files and the fleet's state."""
    from ..agents.builtin import model_for

    question = question.strip()
    if not question:
        raise UsageError("ask a question", hint="/ask what is waiting for me?")
    model = model_for(project.config, project.config.daemon.heartbeat_agent, "chat")
    system = ASK_PROMPT.format(persona=persona_context(project, question), status=status(project).text)
    started = time.monotonic()
    reply = model.complete([{"role": "system", "content": system}, {"role": "user", "content": question}])
    return Reply(reply.text.strip() or "(no answer)",
                 {"answer": reply.text.strip(), "seconds": round(time.monotonic() - started, 3)})


MAX_ID = 2**63 - 1   # SQLite's largest integer: a bigger id names no task


def run_text(project: Project, text: str, *, source: str = "chat") -> Reply:
    """One chat message, "/command arguments", read and run."""
    text = text.strip()
    if not text:
        return Reply(HELP)
    head, _, rest = text.partition("\n")
    word, _, argument = head.strip().partition(" ")
    command = word.lstrip("/").split("@", 1)[0].lower()  # Telegram adds @botname in groups
    argument = argument.strip()
    if command == "add":
        return add(project, argument or rest.partition("\n")[0],
                   rest if argument else rest.partition("\n")[2], source=source)
    if command == "status":
        return status(project)
    if command == "ask":
        return ask(project, "\n".join(filter(None, [argument, rest])))
    if command in ("show", "approve", "reject"):
        task_word, _, remainder = argument.partition(" ")
        task_id = _task_id(task_word, command)
        if command == "show":
            return show(project, task_id)
        if command == "approve":
            return approve(project, task_id, by=source)
        return reject(project, task_id, "\n".join(filter(None, [remainder.strip(), rest.strip()])))
    if command in ("help", "start"):
        return Reply(HELP)
    raise UsageError(f"unknown command '/{command}'", hint=HELP)


def _task_id(word: str, command: str) -> int:
    try:
        task_id = int(word.lstrip("#"))
    except ValueError:
        raise UsageError(f"/{command} needs a task id, not {word[:40]!r}", hint=f"/{command} 3") from None
    if not 0 < task_id <= MAX_ID:
        raise UsageError(f"/{command}: {word[:40]} is not a task id", hint="`/status` lists the task ids")
    return task_id


def describe_error(error: ClawError) -> str:
    return error.message + (f" ({error.hint})" if error.hint else "")
