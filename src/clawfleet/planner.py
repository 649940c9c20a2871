"""The planner: a goal becomes macro tasks a person can read, edit and queue.

`claw plan "GOAL"` asks a model for tasks as structured JSON (title, body, kind, footprint,
dependencies, importance), validates them, and writes them as a task file (`taskfile.py`) that
`claw add -f` queues as it is, dependencies included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from . import git
from .errors import ClawError
from .models import Importance
from .project import Project
from .store import Store
from .taskfile import KINDS, TaskDraft

PLAN_PROMPT = """\
You plan work for a fleet of coding agents that run in parallel on one git repository. Split the
goal below into independent macro tasks, each about twenty minutes of focused work for one agent,
that touch different files where possible. Tasks of kind "research" or "plan" produce a markdown
document under docs/plans/ instead of code.

Reply with JSON only, in this shape:
{{"tasks": [{{"title": "...", "body": "what to do and how to check it, in markdown",
  "kind": "feature|fix|research|plan|experiment", "importance": "low|normal|high|critical",
  "footprint": ["path globs the task will touch"], "depends_on": [numbers of earlier tasks, 1-based]}}]}}

Goal: {goal}

Project instructions (AGENTS.md):
{agents_md}

Files in the repository (first {shown} of {total}):
{files}
"""


class TaskIdea(BaseModel):
    """A task as a model proposes it (the planner, the heartbeat): what to queue."""
    title: str = Field(min_length=1, max_length=200)
    body: str = ""
    kind: str = "feature"
    importance: Importance = Importance.normal


class PlannedTask(TaskIdea):
    footprint: list[str] = Field(default_factory=list)
    depends_on: list[int] = Field(default_factory=list)


class PlanReply(BaseModel):
    tasks: list[PlannedTask] = Field(min_length=1, max_length=50)


def plan_prompt(project: Project, goal: str, max_files: int = 300) -> str:
    files = git.tracked_paths(project.root, project.target_tip())
    agents_md = project.root / "AGENTS.md"
    return PLAN_PROMPT.format(goal=goal, shown=min(len(files), max_files), total=len(files),
                              files="\n".join(files[:max_files]),
                              agents_md=agents_md.read_text().strip() if agents_md.exists() else "(none)")


def parse_plan(text: str, warn: Callable[[str], None] = lambda message: None) -> list[TaskDraft]:
    """Drafts from a model's reply (JSON, possibly fenced); a clear error when it is not a plan.
    Keys a plan does not take are dropped, and `warn` is told which (a model may mean them)."""
    match = re.search(r"\{.*\}", text, re.S)
    if match is None:
        raise ClawError("the planner's model did not reply with JSON",
                        hint=f"its reply began: {text[:200]!r}")
    try:
        reply = PlanReply.model_validate(json.loads(match.group(0)))
    except (ValueError, ValidationError) as error:
        raise ClawError(f"the planner's model replied with an invalid plan: {str(error)[:300]}",
                        hint="run `claw plan` again, or write the tasks file by hand") from None
    raw = json.loads(match.group(0))
    unknown = sorted({key for task in raw.get("tasks", []) if isinstance(task, dict) for key in task}
                     - set(PlannedTask.model_fields))
    if set(raw) - {"tasks"} or unknown:
        warn("the plan's " + ", ".join(f"`{key}`" for key in [*sorted(set(raw) - {"tasks"}), *unknown])
             + f" {'is' if len(unknown) + len(set(raw) - {'tasks'}) == 1 else 'are'} not a plan's key"
             + f" (it takes {', '.join(PlannedTask.model_fields)}): dropped")
    drafts = []
    for number, task in enumerate(reply.tasks, 1):
        depends = sorted({n for n in task.depends_on if 1 <= n < number})  # earlier only: no cycles
        drafts.append(TaskDraft(task.title.strip(), task.body.strip(),
                                task.kind if task.kind in KINDS else "feature",
                                task.importance, footprint=task.footprint, depends=depends))
    return drafts


def propose(project: Project, goal: str, agent_name: str | None = None,
            warn: Callable[[str], None] = lambda message: None) -> list[TaskDraft]:
    """Ask the model of a built-in agent for a plan."""
    from .agents.builtin import model_for

    model = model_for(project.config, agent_name or "builtin", "planner")
    reply = model.complete([{"role": "user", "content": plan_prompt(project, goal)}])
    return parse_plan(reply.text, warn)


def queue_drafts(store: Store, drafts: Sequence[TaskDraft], *, kind: str = "feature",
                 importance: Importance = Importance.normal, priority: int = 0,
                 agent: str | None = None, footprint: Sequence[str] = (), checks: Sequence[str] = (),
                 depends_on: Sequence[int] = (), best_of: int = 1, agents: Sequence[str] = (),
                 model: str | None = None, effort: str | None = None) -> list[int]:
    """Queue drafts in order; a draft's own fields win over the defaults given here."""
    ids: list[int] = []
    for draft in drafts:
        task = store.add_task(
            draft.title, body=draft.body, kind=draft.kind or kind,
            importance=draft.importance or importance,
            priority=draft.priority if draft.priority is not None else priority,
            agent=draft.agent or agent, footprint=draft.footprint or list(footprint),
            checks=checks, depends_on=[*depends_on, *(ids[n - 1] for n in draft.depends)],
            best_of=best_of, agents=agents if not draft.agent else (), model=model, effort=effort)
        ids.append(task.id)
    return ids


def plan_path(project: Project, goal: str) -> Path:
    import time

    return project.claw_dir / "plans" / f"{time.strftime('%Y%m%d-%H%M%S')}-{git.slugify(goal, 40) or 'plan'}.md"
