"""The prompt an agent gets: SOUL.md + AGENTS.md + the task + feedback, from a Jinja2 template."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .git import slugify
from .models import Task

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


def render_prompt(task: Task, *, project_root: Path, branch: str, checks: Sequence[str],
                  feedback: str | None = None, failure: str | None = None,
                  fix_round: int = 0) -> str:
    document = (f"docs/plans/{task.id}-{slugify(task.title) or 'plan'}.md"
                if task.kind in DOCUMENT_KINDS else None)
    return _environment().get_template("attempt.md.j2").render(
        task=task, branch=branch, checks=list(checks), feedback=feedback, document=document,
        failure=failure, fix_round=fix_round,
        soul=_read(project_root / "SOUL.md"), agents_md=_read(project_root / "AGENTS.md"))


def render_research_prompt(config, *, program: str, branch: str, best_metric: float,
                           history: Sequence, agents_md: str = "") -> str:
    """The prompt of one research experiment: program.md, the rules, and every earlier outcome."""
    return _environment().get_template("research.md.j2").render(
        config=config, program=program.strip(), branch=branch, best_metric=best_metric,
        history=list(history), agents_md=agents_md)
