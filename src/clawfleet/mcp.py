"""`claw mcp`: the fleet as an MCP server (the official `mcp` SDK), on stdio or streamable HTTP.

Any MCP client (Claude Code, Codex, an agent inside the fleet) can queue tasks, follow them,
approve or reject them, and use the fleet's memory; a task's agent log and diff are resources
(claw://task/{id}/log, claw://task/{id}/diff). Tools return plain JSON-able data; a ClawError
becomes a tool error carrying its message.

Both protocol eras are served, by the SDK: 2025-11-25 (an `initialize` handshake) and the
stateless 2026-07-28 (`server/discover`, no session). Over HTTP (`--http`) the server is
stateless, on 127.0.0.1 only, behind a bearer token checked, with the body's size, by the
webhook's `Guard` before a byte of the body is read.

Started inside an attempt (an agent's own MCP client), it writes nothing to the store and
decides nothing: a note goes to the attempt's outbox, as `claw memory add` does there, and
queueing, approving or rejecting a task is refused (an agent must never approve itself).

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
    """The SDK's server class and the error a tool raises on purpose (mcp 2: the first to serve
    the 2026-07-28 protocol next to 2025-11-25)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    return MCPServer, ToolError


def _task(task) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "kind": task.kind, "state": str(task.state),
            "importance": str(task.importance), "priority": task.priority, "agent": task.agent,
            "reason": task.reason}


def _note(note) -> dict[str, Any]:
    return {k: v for k, v in asdict(note).items() if v is not None}


INSIDE = ("inside an attempt the fleet's tasks and memory are the person's: an agent cannot queue "
          "a task (a note goes to its outbox)")
INSIDE_REVIEW = ("inside an attempt an agent cannot approve or reject a task: review is the person's")
TOKEN_ENV = "CLAW_MCP_TOKEN"
TOKEN_FILE = "mcp.token"
DEFAULT_PORT = 8766
MAX_BODY = 1 << 20


def build_server(project: Project):
    """The MCP server with the fleet's tools, bound to `project`."""
    from . import git, memory, skills
    from .channels import commands

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

    def review_call(action):
        # Inside an attempt the agent would be judging its own work: refused before anything is read.
        if inside:
            raise ToolError(INSIDE_REVIEW)
        try:
            reply = action()
        except ClawError as error:
            raise ToolError(str(error)) from None
        return {"text": reply.text, **reply.data}

    @server.tool()
    def show_task(task_id: int) -> dict[str, Any]:
        """A task with its latest attempt's summary and the files it changed (+/- lines)."""
        try:
            reply = commands.show(project, task_id)
        except ClawError as error:
            raise ToolError(str(error)) from None
        return {"text": reply.text, **reply.data}

    @server.tool()
    def approve(task_id: int) -> dict[str, Any]:
        """Approve the task's attempt waiting for review: it lands with the next merge."""
        return review_call(lambda: commands.approve(project, task_id, by="mcp"))

    @server.tool()
    def reject(task_id: int, feedback: str | None = None) -> dict[str, Any]:
        """Reject the task's attempt waiting for review. With feedback the task goes back to the
        queue and a new attempt gets the feedback; without, the task is rejected."""
        return review_call(lambda: commands.reject(project, task_id, feedback))

    @server.tool()
    def status() -> dict[str, Any]:
        """The fleet at a glance: tasks by state, and the open ones."""
        reply = commands.status(project)
        return {"text": reply.text, **reply.data}

    @server.tool()
    def list_skills() -> list[dict[str, str]]:
        """The project's skills (skills/NAME/SKILL.md): name, description, path."""
        found, _problems = skills.discover(project.root)
        return [skill.to_dict() for skill in found]

    @server.resource("claw://task/{task_id}/log", name="agent log", mime_type="text/plain",
                     description="The agent's log of the task's latest attempt (redacted).")
    def task_log(task_id: int) -> str:
        attempt = project.latest_attempt(task_id)
        path = project.attempt_dir(attempt.id) / "agent.log"
        return project.redactor.text(path.read_text(errors="replace")) if path.exists() else ""

    @server.resource("claw://task/{task_id}/diff", name="diff", mime_type="text/x-diff",
                     description="The changes of the task's latest attempt against its base commit.")
    def task_diff(task_id: int) -> str:
        attempt = project.latest_attempt(task_id)
        head = attempt.head_commit or git.branch_tip(project.root, attempt.branch) or attempt.base_commit
        return git.diff(project.root, attempt.base_commit, head)

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


def mcp_token(project: Project) -> str:
    """$CLAW_MCP_TOKEN, else the one kept in .claw/run/mcp.token (made once), as the webhook's."""
    from .channels.webhook import bearer_token

    return bearer_token(project, TOKEN_ENV, TOKEN_FILE)


def http_app(project: Project, token: str, max_body: int = MAX_BODY):
    """The stateless streamable-HTTP app at /mcp, behind the webhook's `Guard`."""
    from .channels.webhook import Guard

    app = build_server(project).streamable_http_app(stateless_http=True, json_response=True)
    return Guard(app, token, max_body, limit_hint="send less")


def serve_http(project: Project, port: int = DEFAULT_PORT, announce=lambda line: None) -> None:
    """Serve MCP over streamable HTTP on 127.0.0.1:`port` (0: any free port) until Ctrl-C."""
    import uvicorn

    from .llm.serve import bound_socket

    token = mcp_token(project)
    sock = bound_socket("127.0.0.1", port)
    sock.listen(128)  # connections wait in the backlog from now: the URL announced is usable at once
    where = "$" + TOKEN_ENV if os.environ.get(TOKEN_ENV) else str(project.run_dir / TOKEN_FILE)
    announce(f"MCP on http://127.0.0.1:{sock.getsockname()[1]}/mcp (bearer token: {where})")
    # lifespan on: the SDK's session manager runs in it.
    config = uvicorn.Config(http_app(project, token), log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
