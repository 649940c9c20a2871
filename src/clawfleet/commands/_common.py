"""What every command shares: the consoles, the project lookup, JSON and duration printing."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from ..project import Project

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def open_project() -> Project:
    """The project around the current directory, its config read (a broken config fails every command)."""
    project = Project.find()
    _ = project.config
    return project


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def ago(seconds: float) -> str:
    """A short duration: 42s, 3m05s, 2h10m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
