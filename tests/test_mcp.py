"""`claw mcp`: the official MCP SDK's stdio client drives a real `python -m clawfleet mcp`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from clawfleet.project import Project

TOOLS = {"add_task", "list_tasks", "task_status", "search_memory", "add_memory"}


def _is_error(result) -> bool:
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def _data(result):
    """A tool's JSON result, from its text content (the same in every SDK version)."""
    assert not _is_error(result), result.content[0].text
    texts = [block.text for block in result.content]
    return json.loads(texts[0]) if len(texts) == 1 else [json.loads(t) for t in texts]


async def _session_run(repo: Path, calls, env: dict[str, str] | None = None):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "clawfleet", "mcp"], cwd=str(repo),
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""), **(env or {})})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await calls(session)


def drive(repo: Path, calls, env=None, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(_session_run(repo, calls, env), timeout))


def test_tools_queue_tasks_read_status_and_use_memory(project):
    repo = project.root

    async def calls(session: ClientSession):
        tools = {tool.name for tool in (await session.list_tools()).tools}
        added = _data(await session.call_tool("add_task", {"title": "Add a health endpoint",
                                                            "body": "GET /health returns 200",
                                                            "importance": "high", "priority": 3}))
        listed = await session.call_tool("list_tasks", {"state": "queued"})
        status = _data(await session.call_tool("task_status", {"task_id": added["id"]}))
        note = _data(await session.call_tool("add_memory", {"text": "Health checks must not touch the DB",
                                                            "tags": ["health"], "task_id": added["id"]}))
        found = await session.call_tool("search_memory", {"query": "does the health check use the db?"})
        bad_importance = await session.call_tool("add_task", {"title": "x", "importance": "huge"})
        missing = await session.call_tool("task_status", {"task_id": 999})
        bad_state = await session.call_tool("list_tasks", {"state": "sleeping"})
        return tools, added, listed, status, note, found, bad_importance, missing, bad_state

    tools, added, listed, status, note, found, bad_importance, missing, bad_state = drive(repo, calls)
    assert TOOLS <= tools
    assert (added["title"], added["state"], added["importance"], added["priority"]) == \
        ("Add a health endpoint", "queued", "high", 3)
    assert "Add a health endpoint" in listed.content[0].text
    assert status["body"] == "GET /health returns 200" and status["attempts"] == []
    assert (note["source"], note["task_id"], note["tags"]) == ("mcp", added["id"], ["health"])
    assert "Health checks must not touch the DB" in found.content[0].text
    assert _is_error(bad_importance) and "importance must be one of" in bad_importance.content[0].text
    assert _is_error(missing) and "there is no task 999" in missing.content[0].text
    assert _is_error(bad_state) and "state must be one of" in bad_state.content[0].text
    # What the MCP client did is in the same store the CLI reads.
    store = Project(repo).store
    assert [t.title for t in store.list_tasks()] == ["Add a health endpoint"]
    assert store.notes()[0].body == "Health checks must not touch the DB"


def test_memory_added_from_inside_an_attempt_carries_its_provenance(project, tmp_path):
    """Inside an attempt the note goes to its outbox; imported, it is the attempt's."""
    from clawfleet import memory

    store = project.store
    task = store.add_task("Refactor the cache")
    attempt = store.start_attempt(task.id, agent="builtin", base_commit="0" * 40,
                                  branch_for=lambda n: f"claw/{task.id}-{n}")
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    async def calls(session: ClientSession):
        return _data(await session.call_tool("add_memory", {"text": "Cache TTLs are in seconds",
                                                            "tags": ["cache"]}))

    written = drive(project.root, calls, env={"CLAW_TASK_ID": str(task.id), "CLAW_ATTEMPT_ID": str(attempt.id),
                                              "CLAW_OUTBOX": str(outbox)})
    assert written == {"outbox": str(outbox), "text": "Cache TTLs are in seconds", "tags": ["cache"]}
    assert store.notes() == []
    assert memory.import_outbox(store, outbox, task_id=task.id, attempt_id=attempt.id).imported == 1
    note = store.notes()[0]
    assert (note.body, note.source, note.task_id, note.attempt_id, note.tags) == \
        ("Cache TTLs are in seconds", "agent", task.id, attempt.id, ["cache"])


def test_ids_and_priorities_past_sqlite_are_tool_errors_that_say_so(project):
    """Each was an OverflowError from SQLite inside the tool ("Python int too large...")."""
    async def calls(session: ClientSession):
        return {
            "status": await session.call_tool("task_status", {"task_id": 2**63}),
            "priority": await session.call_tool("add_task", {"title": "x", "priority": 2**63}),
            "note_task": await session.call_tool("add_memory", {"text": "a note", "task_id": 2**63}),
        }

    results = drive(project.root, calls)
    said = {name: result.content[0].text for name, result in results.items()}
    assert all(_is_error(result) for result in results.values()), said
    assert f"there is no task {2**63}" in said["status"] and f"there is no task {2**63}" in said["note_task"]
    assert "priority must be between" in said["priority"]
    assert not any("too large" in text for text in said.values()), said
    store = Project(project.root).store
    assert store.list_tasks() == [] and store.notes() == []
