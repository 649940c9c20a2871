"""`claw mcp`: the fleet as an MCP server on stdio (the official `mcp` SDK).

Any MCP client (Claude Code, Codex, an agent inside the fleet) can queue tasks, read their
status and use the fleet's memory. Tools return plain JSON-able data; a ClawError becomes a
tool error carrying its message and hint.

Started inside an attempt (an agent's own MCP client), it writes nothing to the store: a note
goes to the attempt's outbox, as `claw memory add` does there, and queueing a task is refused.

    claude mcp add claw -- claw mcp
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import ClawError
from .models import Importance, TaskState
from .project import Project


def _sdk():
    """The SDK's server class and the error a tool raises on purpose (mcp 2, or mcp 1's names)."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        from mcp.server.fastmcp import FastMCP as MCPServer
        from mcp.server.fastmcp.exceptions import ToolError
    return MCPServer, ToolError


def _task(task) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "kind": task.kind, "state": str(task.state),
            "importance": str(task.importance), "priority": task.priority, "agent": task.agent,
            "reason": task.reason}


def _note(note) -> dict[str, Any]:
    return {k: v for k, v in asdict(note).items() if v is not None}


INSIDE = ("inside an attempt the fleet's tasks and memory are the person's: an agent cannot queue "
          "a task (a note goes to its outbox)")


def build_server(project: Project):
    """The MCP server with the fleet's tools, bound to `project`."""
    from . import memory

    server_class, ToolError = _sdk()  # a ToolError's message reaches the client; other errors' do not
    server = server_class(
        "clawfleet", instructions="Drive a clawfleet: queue coding tasks for its agents, follow them, "
                                  "and read or add to its memory.", log_level="WARNING")
    inside = memory.inside_an_attempt()

    def known_id(value: int | None, what: str) -> int | None:
        """Ids are SQLite integers: past them there is no such row (not an OverflowError)."""
        if value is not None and not 0 < value < 2**63:
            raise ToolError(f"there is no {what} {value}")
        return value

    @server.tool()
    def add_task(title: str, body: str = "", importance: str = "normal", priority: int = 0,
                 kind: str = "feature", agent: str | None = None) -> dict[str, Any]:
        """Queue a task for the fleet. importance: low, normal, high or critical (drives review)."""
        if inside:
            raise ToolError(INSIDE)
        try:
            level = Importance(importance)
        except ValueError:
            raise ToolError(f"importance must be one of {', '.join(i.value for i in Importance)}") from None
        if not title.strip():
            raise ToolError("a task needs a title")
        if not -1_000_000 <= priority <= 1_000_000:  # as `claw add --priority`
            raise ToolError("priority must be between -1000000 and 1000000")
        try:
            if agent is not None:
                project.config.agent(agent)
            task = project.store.add_task(title.strip(), body=body, kind=kind, agent=agent, priority=priority,
                                  importance=level)
        except ClawError as error:
            raise ToolError(str(error)) from None
        return _task(task)

    @server.tool()
    def list_tasks(state: str | None = None) -> list[dict[str, Any]]:
        """The fleet's tasks, optionally only those in one state (queued, running, review, approved,
        merged, failed, rejected, cancelled)."""
        try:
            states = [TaskState(state)] if state else None
        except ValueError:
            raise ToolError(f"state must be one of {', '.join(s.value for s in TaskState)}") from None
        return [_task(t) for t in project.store.list_tasks(states)]

    @server.tool()
    def task_status(task_id: int) -> dict[str, Any]:
        """One task with its attempts: state, why, the agent's summary, tokens, check results."""
        try:
            task = project.store.get_task(known_id(task_id, "task"))
        except ClawError as error:
            raise ToolError(str(error)) from None
        attempts = [{"id": a.id, "number": a.number, "agent": a.agent, "state": str(a.state),
                     "branch": a.branch, "summary": a.summary, "reason": a.reason,
                     "checks_passed": a.checks_passed, "tokens": a.tokens}
                    for a in project.store.attempts(task_id=task_id)]
        return {**_task(task), "body": task.body, "feedback": task.feedback, "attempts": attempts}

    @server.tool()
    def search_memory(query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The fleet's notes most relevant to some words (BM25), best first, with provenance."""
        try:
            return [_note(n) for n in memory.search(project.store, query, max(1, min(limit, 100)))]
        except ClawError as error:
            raise ToolError(str(error)) from None

    @server.tool()
    def add_memory(text: str, tags: list[str] | None = None, task_id: int | None = None) -> dict[str, Any]:
        """Remember a note for later prompts: one fact, how to do something, a trap to avoid.
        Inside an attempt it is kept, as the attempt's, when the attempt ends (task_id is ignored)."""
        if not text.strip():
            raise ToolError("the note is empty")
        tags = [t for t in tags or [] if t.strip()]
        known_id(task_id, "task")
        try:
            if inside:
                outbox = os.environ.get(memory.OUTBOX_ENV, "")
                if not outbox:
                    raise ClawError(f"inside an attempt notes go to its outbox, but ${memory.OUTBOX_ENV} is not set")
                note = memory.write_to_outbox(Path(outbox), text, tags)
                return {"outbox": outbox, "text": note.text, "tags": note.tags}
            note = project.store.add_note(text.strip(), source="mcp", tags=tags, task_id=task_id)
        except ClawError as error:
            raise ToolError(str(error)) from None
        return _note(note)

    return server


def serve(project: Project) -> None:
    """Run the MCP server on stdin/stdout until the client closes it."""
    build_server(project).run("stdio")
