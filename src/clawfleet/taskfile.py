"""Tasks written in markdown: one task per `## ` section, or the whole file as one task's body."""

from __future__ import annotations

import re

_SECTION = re.compile(r"^## +(.+?)\s*$", re.M)


def parse_task_file(text: str) -> list[tuple[str, str]]:
    """[(title, body)] for each `## Title` section; [] when the file has no such sections."""
    headings = list(_SECTION.finditer(text))
    tasks = []
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        tasks.append((heading.group(1).strip(), text[heading.end():end].strip()))
    return tasks


def title_from_body(text: str) -> str | None:
    """The first `# ` heading, or the first non-empty line, as a title."""
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("#").strip()
    return None
