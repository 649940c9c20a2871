"""The prompt an agent gets: SOUL.md + AGENTS.md + the task + feedback, from a Jinja2 template."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .models import Task


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
    return _environment().get_template("attempt.md.j2").render(
        task=task, branch=branch, checks=list(checks), feedback=feedback,
        failure=failure, fix_round=fix_round,
        soul=_read(project_root / "SOUL.md"), agents_md=_read(project_root / "AGENTS.md"))
