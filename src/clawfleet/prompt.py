"""The prompt an agent gets, from a Jinja2 template: SOUL.md + USER.md + AGENTS.md + the skills
index + relevant memory + the task + feedback. (Chat replies and the heartbeat take the same
persona from `channels.context.persona_context`.)
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .git import slugify
from .models import Note, Task

DOCUMENT_KINDS = ("research", "plan")   # tasks whose result is a markdown document


@cache
def _environment():
    import jinja2  # here, not at the top: the runner starts faster when a round needs no prompt yet

    return jinja2.Environment(loader=jinja2.PackageLoader("clawfleet", "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def claw_command() -> str:
    """How an agent runs `claw` from its worktree: the program when on PATH, else this Python."""
    return "claw" if shutil.which("claw") else f"{sys.executable} -m clawfleet"


def render_prompt(task: Task, *, project_root: Path, branch: str, checks: Sequence[str],
                  feedback: str | None = None, failure: str | None = None,
                  fix_round: int = 0, agent_kind: str | None = None,
                  notes: Sequence[Note] | None = None, previous: dict | None = None) -> str:
    """The prompt of one round. `notes` defaults to the memory most relevant to the task.
    `previous` says where a send-back's attempt starts (orchestrator: `AttemptSpec.continued`)."""
    from . import memory, skills

    document = (f"docs/plans/{task.id}-{slugify(task.title) or 'plan'}.md"
                if task.kind in DOCUMENT_KINDS else None)
    if notes is None:
        notes = memory.notes_for_prompt(project_root, task)
    return _environment().get_template("attempt.md.j2").render(
        task=task, branch=branch, checks=list(checks), feedback=feedback, document=document,
        failure=failure, fix_round=fix_round, previous=previous,
        soul=_read(project_root / "SOUL.md"), user_md=_read(project_root / "USER.md"),
        agents_md=_read(project_root / "AGENTS.md"),
        skills=skills.index(project_root, agent_kind), notes=list(notes),
        provenance=memory.describe_provenance, claw=claw_command())


def render_next_turn(*, workspace: Path, branch: str, checks: Sequence[str],
                     failure: str | None = None, fix_round: int = 0, feedback: str | None = None,
                     previous: dict | None = None) -> str:
    """The next turn of an agent's own session, continued: the failing checks of a fix round,
    a reviewer's feedback when its work was sent back, or that its turn was cut off (a crashed
    runner's retry: `previous["interrupted"]`). The task and the project's context are
    in the conversation already."""
    return _environment().get_template("next_turn.md.j2").render(
        workspace=workspace, branch=branch, checks=list(checks), failure=failure,
        fix_round=fix_round, feedback=feedback, previous=previous)


def render_research_prompt(config, *, program: str, branch: str, best_metric: float,
                           history: Sequence, agents_md: str = "", memory: str = "") -> str:
    """The prompt of one research experiment: program.md, the rules, the latest outcomes and
    what memory recalls about the program."""
    return _environment().get_template("research.md.j2").render(
        config=config, program=program.strip(), branch=branch, best_metric=best_metric,
        history=list(history), agents_md=agents_md, memory=memory)
