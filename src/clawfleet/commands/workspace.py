"""`claw workspace list | doctor | prune`: what workspaces exist, why a setup failed, cleanup."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..printable import escape
from ..workspace import WorkspacePool, doctor_report
from ._common import JsonOption, ago, console, open_project, print_json

app = typer.Typer(no_args_is_help=True,
                  help="Workspaces (worktrees made ready to run): list them, explain setup failures, prune.")


def _size(count: int | None) -> str:
    if count is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """Every workspace: state, attempt, ports, setup, disk use."""
    project = open_project()
    items = WorkspacePool(project).inventory()
    if as_json:
        print_json(items)
        return
    if not items:
        console.print("no workspaces (`claw run` makes them; \\[fleet] pool_size keeps some warm)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("workspace", "state", "attempt", "ports", "setup", "disk", "age"):
        table.add_column(column, no_wrap=True)
    now = time.time()
    for item in items:
        ports = item.get("ports")
        setup = item.get("setup") or ""
        if setup == "ok" and item.get("setup_commit"):
            setup += f" @ {item['setup_commit'][:8]}"
        table.add_row(escape(Path(item["path"]).name), item["state"],
                      str(item["attempt_id"] or ""), f"{ports[0]}-{ports[1]}" if ports else "",
                      f"[red]{setup}[/]" if setup == "failed" else setup,
                      _size(item.get("disk_bytes")),
                      ago(now - item["created_at"]) if item.get("created_at") else "")
    console.print(table)
    total = sum(item.get("disk_bytes") or 0 for item in items)
    console.print(f"{len(items)} workspace(s), {_size(total)} on disk, in {project.worktrees_dir}")


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Explain what keeps workspaces from being ready (exit status 1 when a setup failed).

    Failed setups with the command's output, includes that match nothing, ports, stale folders.
    """
    project = open_project()
    report = doctor_report(project)
    if as_json:
        print_json(report)
    else:
        for note in report["notes"]:
            console.print(f"[dim]·[/] {escape(note)}")
        for problem in report["problems"]:
            console.print(f"[red]✗[/] {escape(problem['what'])}")
            if problem.get("output"):
                console.print(escape(problem["output"].rstrip()), style="dim")
            if problem.get("fix"):
                console.print(f"  fix: {escape(problem['fix'])}")
        if not report["problems"]:
            console.print("[green]workspaces look fine[/]")
    if report["problems"]:
        raise typer.Exit(1)


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Only say what would be removed.")] = False,
    pool: Annotated[bool, typer.Option("--pool", help="Remove the warm workspaces of the pool too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove stale workspaces; never one an attempt uses, with uncommitted work, or a branch.

    Stale: failed or interrupted setups, workspaces of finished attempts, folders a crash left
    (staging-*), shared venvs no workspace uses.
    """
    project = open_project()
    report = WorkspacePool(project).prune(dry_run=dry_run, pool=pool)
    if as_json:
        print_json(report)
        return
    if not report:
        console.print("nothing to prune")
    for item in report:
        style = "yellow" if item["action"] == "kept" else "green"
        console.print(f"[{style}]{item['action']}[/] {escape(item['path'])}: {escape(item['reason'])}")
