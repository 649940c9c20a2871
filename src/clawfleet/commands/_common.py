"""What every command shares: the consoles, the project lookup, JSON and duration printing."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from ..project import Project
from ..timefmt import ago  # noqa: F401  (the commands show durations with it)



def _console(stream) -> Console:
    """On a terminal rich fits its width. Elsewhere (a pipe, a log, CI) there is no width to fit:
    lines are never wrapped (a path or a command someone copies stays on one line) and tables
    get room (COLUMNS still wins)."""
    if stream.isatty():
        return Console(stderr=stream is sys.stderr, highlight=False)
    width = None if os.environ.get("COLUMNS", "").isdigit() else 160
    return Console(stderr=stream is sys.stderr, highlight=False, soft_wrap=True, width=width)


console = _console(sys.stdout)
err_console = _console(sys.stderr)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# Ids are SQLite integers: a larger number is a usage error, not an OverflowError from the store.
ID_RANGE = {"min": 1, "max": 2**63 - 1}


def open_project() -> Project:
    """The project around the current directory, its config read (a broken config fails every command)."""
    project = Project.find()
    _ = project.config
    return project


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))
