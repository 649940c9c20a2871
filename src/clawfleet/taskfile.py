"""Tasks written in markdown: one task per `## ` section, or the whole file as one task's body.

A section may start with `key: value` lines that set the task's fields; `depends` names other
sections of the same file by their number (1 = the first section), so a plan can be edited
and queued as it is:

    ## Add the export endpoint
    kind: feature
    importance: high
    footprint: src/api/**, tests/api/**
    depends: 1

    Body in markdown...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import UsageError
from .models import Importance

_SECTION = re.compile(r"^## +(?:\d+\.\s+)?(.+?)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FIELD = re.compile(r"^(kind|importance|footprint|depends|priority|agent):\s*(.*?)\s*$")
KINDS = ("feature", "fix", "research", "plan", "experiment")


@dataclass
class TaskDraft:
    title: str
    body: str = ""
    kind: str | None = None
    importance: Importance | None = None
    priority: int | None = None
    agent: str | None = None
    footprint: list[str] = field(default_factory=list)
    depends: list[int] = field(default_factory=list)   # section numbers, 1-based


def parse_task_file(text: str) -> list[TaskDraft]:
    """A draft per `## Title` section; [] when the file has no such sections.

    A `## ` line inside a fenced code block is part of the body, not a new task.
    """
    drafts: list[tuple[TaskDraft, list[str]]] = []
    fence = None
    in_header = False
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if opening and fence is None:
            fence = opening.group(1)
        elif opening and opening.group(1) == fence:
            fence = None
        heading = _SECTION.match(line) if fence is None else None
        if heading:
            drafts.append((TaskDraft(heading.group(1).strip()), []))
            in_header = True
            continue
        if not drafts:
            continue
        draft, body = drafts[-1]
        match = _FIELD.match(line) if in_header else None
        if match:
            _set_field(draft, match.group(1), match.group(2), len(drafts))
            continue
        in_header = in_header and not line.strip() and not body
        body.append(line)
    for draft, body in drafts:
        draft.body = "\n".join(body).strip()
    return [draft for draft, _ in drafts]


def _set_field(draft: TaskDraft, key: str, value: str, section: int) -> None:
    where = f"section {section} ({draft.title!r}), `{key}:`"
    try:
        if key == "kind":
            if value not in KINDS:
                raise ValueError(f"one of {', '.join(KINDS)}")
            draft.kind = value
        elif key == "importance":
            draft.importance = Importance(value)
        elif key == "priority":
            draft.priority = int(value)
        elif key == "agent":
            draft.agent = value or None
        elif key == "footprint":
            draft.footprint = [glob.strip() for glob in value.split(",") if glob.strip()]
        elif key == "depends":
            draft.depends = [int(n) for n in re.split(r"[,\s]+", value) if n]
    except ValueError as error:
        allowed = str(error) if key == "kind" else {"importance": "low, normal, high or critical",
                                                     "priority": "a whole number",
                                                     "depends": "section numbers, e.g. 1, 2"}.get(key, "")
        raise UsageError(f"{where} has a bad value {value!r}", hint=f"use {allowed}") from None
    if key == "depends" and any(n < 1 or n >= section for n in draft.depends):
        raise UsageError(f"{where} must name earlier sections (1 to {section - 1})",
                         hint="a task can only wait for tasks above it, so plans have no cycles")


def render_task_file(drafts: list[TaskDraft], heading: str = "") -> str:
    """The markdown form of drafts, readable back by `parse_task_file` (for `claw plan`)."""
    parts = [f"# {heading}\n"] if heading else []
    for number, draft in enumerate(drafts, 1):
        lines = [f"## {number}. {draft.title}"]
        if draft.kind:
            lines.append(f"kind: {draft.kind}")
        if draft.importance:
            lines.append(f"importance: {draft.importance}")
        if draft.footprint:
            lines.append(f"footprint: {', '.join(draft.footprint)}")
        if draft.depends:
            lines.append(f"depends: {', '.join(map(str, draft.depends))}")
        parts.append("\n".join(lines) + "\n\n" + draft.body.strip() + "\n")
    return "\n".join(parts)


def title_from_body(text: str) -> str | None:
    """The first `# ` heading, or the first non-empty line, as a title."""
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("#").strip()
    return None
