"""`claw memory`: add, search, list, forget and export the fleet's notes."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import memory
from ..errors import ClawError, UsageError
from ..models import Note
from ..printable import escape
from ._common import ID_RANGE, JsonOption, ago, console, open_project, print_json

app = typer.Typer(no_args_is_help=True, help="The fleet's memory: notes with provenance (who, which task "
                  "and attempt, when), searched with SQLite FTS5; the most relevant go into every prompt.")

TagOption = Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="A tag (one word). Repeatable.")]


@app.command("add")
def add(
    text: Annotated[str, typer.Argument(help="What to remember; '-' reads it from standard input.")],
    tag: TagOption = None,
    task: Annotated[Optional[int], typer.Option(help="The task it is about (inside an attempt: always the attempt's).", **ID_RANGE)] = None,
    attempt: Annotated[Optional[int], typer.Option(help="The attempt it came from (inside an attempt: always that one).", **ID_RANGE)] = None,
    source: Annotated[Optional[str], typer.Option(help=f"Who wrote it: {', '.join(memory.SOURCES)} (default: person; inside an attempt: agent).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remember a note. Inside an attempt it goes to the attempt's outbox, and clawfleet keeps it
    with the task and attempt when the attempt ends."""
    if text == "-":
        text = typer.get_text_stream("stdin").read()
    if not text.strip():
        raise UsageError("the note is empty", hint='claw memory add "what you learned"')
    tags = [t.strip() for t in tag or [] if t.strip()]
    if any(len(t.split()) > 1 for t in tags):
        raise UsageError("a tag is one word", hint="use --tag twice for two tags")
    if memory.inside_an_attempt():
        _add_to_outbox(text, tags, claimed=task is not None or attempt is not None or source not in (None, "agent"),
                       as_json=as_json)
        return
    source = source or "person"
    if source not in memory.SOURCES:
        raise UsageError(f"unknown source '{source}'", hint=f"use one of: {', '.join(memory.SOURCES)}")
    project = open_project()
    note = project.store.add_note(
        text.strip(), source=source, tags=tags,
        task_id=task, attempt_id=attempt)
    if as_json:
        print_json(asdict(note))
    else:
        console.print(f"remembered note {note.id}")


def _add_to_outbox(text: str, tags: list[str], *, claimed: bool, as_json: bool) -> None:
    """An agent's note: into its attempt's outbox, never the store (which it may not write)."""
    if claimed:
        raise UsageError("inside an attempt a note's task, attempt and source are clawfleet's",
                         hint="drop --task, --attempt and --source: the note is kept as this attempt's")
    outbox = os.environ.get(memory.OUTBOX_ENV, "")
    if not outbox:
        raise ClawError(f"inside an attempt notes go to its outbox, but ${memory.OUTBOX_ENV} is not set",
                        hint="clawfleet sets it for the agent; outside an attempt, unset CLAW_ATTEMPT_ID "
                             "and CLAW_TASK_ID")
    note = memory.write_to_outbox(Path(outbox), text, tags)
    if as_json:
        print_json({"outbox": outbox, "text": note.text, "tags": note.tags})
    else:
        console.print("noted: clawfleet adds it to memory when this attempt ends")


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to look for; notes sharing the most (and rarest) rank first.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many notes.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Find the notes most relevant to some words (BM25)."""
    notes = memory.search(open_project().store, query, limit)
    _print_notes(notes, as_json, empty=f"no note matches {query!r}")


@app.command("list")
def list_notes(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", **ID_RANGE)] = 50,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="Only notes with this tag.")] = None,
    task: Annotated[Optional[int], typer.Option(help="Only notes about this task.", **ID_RANGE)] = None,
    as_json: JsonOption = False,
) -> None:
    """List notes, newest first."""
    notes = open_project().store.notes(limit=limit, tag=tag, task_id=task)
    _print_notes(notes, as_json, empty="no notes yet: `claw memory add \"...\"` writes one")


@app.command("forget")
def forget(note_id: Annotated[int, typer.Argument(help="Note id, from `claw memory list`.", **ID_RANGE)]) -> None:
    """Delete a note (the event log keeps that it existed)."""
    note = open_project().store.forget_note(note_id)
    console.print(f"forgot note {note.id}: {escape(note.body.splitlines()[0][:80])}")


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it; '-' prints it.")] = Path("MEMORY.md"),
) -> None:
    """Write every note, with its provenance, to MEMORY.md (in the current folder by default)."""
    project = open_project()
    notes = project.store.notes()
    text = memory.export_markdown(notes)
    if str(output) == "-":
        print(text, end="")
        return
    output.write_text(text)
    console.print(f"wrote {len(notes)} note(s) to {escape(str(output))}")


def _print_notes(notes: list[Note], as_json: bool, empty: str) -> None:
    if as_json:
        print_json([asdict(n) for n in notes])
        return
    if not notes:
        console.print(empty)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "note", "from", "when"):
        table.add_column(column, overflow="fold")
    now = time.time()
    for note in notes:
        origin = note.source + (f", task {note.task_id}" if note.task_id is not None else "")
        if note.tags:
            origin += f" [{' '.join(note.tags)}]"
        table.add_row(str(note.id), escape(note.body), escape(origin), ago(now - note.created_at) + " ago")
    console.print(table)
