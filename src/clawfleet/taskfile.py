"""Tasks written in markdown: one task per `## ` section, or the whole file as one task's body."""

from __future__ import annotations

import re

_SECTION = re.compile(r"^## +(.+?)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_task_file(text: str) -> list[tuple[str, str]]:
    """[(title, body)] for each `## Title` section; [] when the file has no such sections.

    A `## ` line inside a fenced code block is part of the body, not a new task.
    """
    tasks: list[tuple[str, list[str]]] = []
    fence = None
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if opening and fence is None:
            fence = opening.group(1)
        elif opening and opening.group(1) == fence:
            fence = None
        heading = _SECTION.match(line) if fence is None else None
        if heading:
            tasks.append((heading.group(1).strip(), []))
        elif tasks:
            tasks[-1][1].append(line)
    return [(title, "\n".join(body).strip()) for title, body in tasks]


def title_from_body(text: str) -> str | None:
    """The first `# ` heading, or the first non-empty line, as a title."""
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("#").strip()
    return None
