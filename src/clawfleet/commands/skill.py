"""`claw skill`: make, list, show and learn skills (`skills/<name>/SKILL.md`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import skills
from ..printable import escape
from ._common import ID_RANGE, JsonOption, console, err_console, open_project, print_json

app = typer.Typer(no_args_is_help=True, help="Skills in the Agent Skills format (skills/NAME/SKILL.md): "
                  "every prompt lists them, and agents that read skills find them in their worktree.")

NameArgument = Annotated[str, typer.Argument(help="Skill name: lowercase letters, digits and hyphens.")]


@app.command("new")
def new(
    name: NameArgument,
    description: Annotated[Optional[str], typer.Option("--description", "-d", help="What it does and when to use it (the agents choose skills by this).")] = None,
) -> None:
    """Write skills/NAME/SKILL.md from a starting template, to edit."""
    project = open_project()
    path = skills.new_skill(project.root, skills.check_name(name),
                            description or f"TODO: what {name} does and when to use it")
    console.print(f"[green]wrote[/] {escape(str(path.relative_to(project.root)))}: edit its description and steps")


@app.command("install")
def install(
    source: Annotated[Path, typer.Argument(help="A skill folder (holding SKILL.md) to copy into skills/.")],
    name: Annotated[Optional[str], typer.Option(help="Install it under this name (default: its SKILL.md's name).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Put it in place of an installed skill of the same name.")] = False,
) -> None:
    """Copy a skill folder into the project's skills/, checked first: plain files only (a symlink
    is refused, never followed), a valid SKILL.md, within the size limits."""
    project = open_project()
    skill = skills.install_skill(project.root, source, name=skills.check_name(name) if name else None,
                                 replace=replace)
    console.print(f"[green]installed[/] {escape(str(skill.folder.relative_to(project.root)))}: "
                  f"{escape(skill.description)}")


@app.command("list")
def list_skills(as_json: JsonOption = False) -> None:
    """List the project's skills; invalid ones are reported with their problem."""
    project = open_project()
    found, problems = skills.discover(project.root)
    if as_json:
        print_json({"skills": [s.to_dict() for s in found], "problems": [str(p) for p in problems]})
        return
    if found:
        table = Table(box=None, pad_edge=False)
        for column in ("name", "description", "path"):
            table.add_column(column, overflow="fold")
        for skill in found:
            table.add_row(skill.name, escape(skill.description), escape(str(skill.path.relative_to(project.root))))
        console.print(table)
    elif not problems:
        console.print("no skills yet: `claw skill new NAME` makes one")
    for problem in problems:
        err_console.print(f"[red]invalid skill:[/] {escape(str(problem))}")


@app.command("show")
def show(name: NameArgument, as_json: JsonOption = False) -> None:
    """Print a skill's SKILL.md."""
    skill = skills.get_skill(open_project().root, name)
    if as_json:
        print_json({**skill.to_dict(), "body": skill.body})
        return
    print(skill.path.read_text(), end="")


@app.command("learn")
def learn(
    attempt_id: Annotated[int, typer.Argument(help="A successful attempt's id (`claw show TASK` lists them).", **ID_RANGE)],
    name: Annotated[Optional[str], typer.Option(help="The skill's name (default: from the task's title).")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Fill the template; do not ask the built-in agent's model.")] = False,
) -> None:
    """Draft a skill from a successful attempt (by the built-in agent's model when it has one)."""
    project = open_project()
    with console.status("drafting the skill…"):
        draft = skills.learn(project, attempt_id, name=name, use_model=not no_model)
    how = f"by {draft.by_model}" if draft.by_model else f"from the template ({draft.note})" if draft.note else "from the template"
    console.print(f"[green]drafted[/] {escape(str(draft.path.relative_to(project.root)))} {escape(how)}: "
                  "read it and edit it before agents rely on it")
