"""`claw mcp` in both protocol eras (2025-11-25 with `initialize`, stateless 2026-07-28 with
`server/discover`), over stdio and streamable HTTP, driven by the official `mcp` Python client
against a real `python -m clawfleet mcp` process; and the HTTP server's token and size guard."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from clawfleet.models import AttemptState, TaskState
from clawfleet.project import Project

TOKEN = "test-token-" + "x" * 20
ERAS = ["2025-11-25", "2026-07-28"]
TOOLS = {"add_task", "list_tasks", "task_status", "show_task", "approve", "reject", "status",
         "list_skills", "search_memory", "add_memory"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "HOME": os.environ.get("HOME", ""), **(extra or {})}


def _data(result):
    assert not getattr(result, "is_error", False), result.content[0].text
    return json.loads(result.content[0].text)


async def _open(session: ClientSession, era: str) -> str:
    if era == "2025-11-25":
        await session.initialize()
    else:
        await session.discover()
    return session.protocol_version


def review_ready(project: Project) -> int:
    """A task whose attempt waits for review (as an agent's finished attempt does)."""
    store = project.store
    task = store.add_task("Add a health endpoint")
    attempt = store.start_attempt(task.id, agent="builtin", base_commit=project.target_tip(),
                                  branch_for=lambda n: f"claw/{task.id}-{n}")
    store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready", task_state=TaskState.review)
    return task.id


async def _scenario(session: ClientSession, era: str, review_id: int):
    version = await _open(session, era)
    tools = {tool.name for tool in (await session.list_tools()).tools}
    added = _data(await session.call_tool("add_task", {"title": "Queue me", "importance": "high"}))
    approved = _data(await session.call_tool("approve", {"task_id": review_id}))
    await session.call_tool("add_memory", {"text": "Health checks must not touch the DB"})
    found = await session.call_tool("search_memory", {"query": "health check db"})
    status = _data(await session.call_tool("status", {}))
    return version, tools, added, approved, found.content[0].text, status


def _check(project: Project, era: str, review_id: int, outcome) -> None:
    version, tools, added, approved, found, status = outcome
    assert version == era
    assert TOOLS <= tools
    assert added["title"] == "Queue me"
    assert approved["id"] == review_id
    assert "Health checks must not touch the DB" in found
    assert status["counts"] == {"approved": 1, "queued": 1}
    store = Project(project.root).store
    assert store.get_task(review_id).state == TaskState.approved
    assert store.latest_attempt(review_id).state == AttemptState.approved


def _stdio(repo: Path, session_calls, env=None, timeout: float = 60):
    async def run():
        params = StdioServerParameters(command=sys.executable, args=["-m", "clawfleet", "mcp"],
                                       cwd=str(repo), env=_env(env))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                return await session_calls(session)
    return asyncio.run(asyncio.wait_for(run(), timeout))


@contextmanager
def http_server(repo: Path, env: dict[str, str] | None = None):
    """A real `claw mcp --http --port 0`; yields its URL once it listens."""
    child = subprocess.Popen([sys.executable, "-m", "clawfleet", "mcp", "--http", "--port", "0"], cwd=repo,
                             env=_env({"CLAW_MCP_TOKEN": TOKEN, **(env or {})}),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/mcp", line)
        assert match, line + child.stderr.read() if child.poll() is not None else line
        yield match.group(0)
    finally:
        child.terminate()
        child.wait(10)
        rest = child.stderr.read()
        assert "Traceback" not in rest, rest


def _http(url: str, session_calls, token: str = TOKEN, timeout: float = 60):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def run():
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as client:
            async with streamable_http_client(url, http_client=client) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    return await session_calls(session)
    return asyncio.run(asyncio.wait_for(run(), timeout))


@pytest.mark.parametrize("era", ERAS)
def test_the_official_client_over_stdio_in_both_eras(project, era):
    review_id = review_ready(project)
    outcome = _stdio(project.root, lambda s: _scenario(s, era, review_id))
    _check(project, era, review_id, outcome)


@pytest.mark.parametrize("era", ERAS)
def test_the_official_client_over_http_in_both_eras(project, era):
    review_id = review_ready(project)
    with http_server(project.root) as url:
        outcome = _http(url, lambda s: _scenario(s, era, review_id))
    _check(project, era, review_id, outcome)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_resources_give_a_tasks_log_and_diff(project):
    task_id = review_ready(project)
    attempt = project.store.latest_attempt(task_id)
    # The agent's change, on its attempt's branch.
    _git(project.root, "checkout", "-q", "-b", attempt.branch)
    (project.root / "app.txt").write_text("one\ntwo\n")
    _git(project.root, "commit", "-qam", "add two")
    _git(project.root, "checkout", "-q", "-")
    log = project.attempt_dir(attempt.id) / "agent.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("the agent said hello\n")

    async def calls(session):
        await session.discover()
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        read = await session.read_resource(f"claw://task/{task_id}/log")
        diff = await session.read_resource(f"claw://task/{task_id}/diff")
        return templates, read.contents[0].text, diff.contents[0].text

    templates, text, diff = _stdio(project.root, calls)
    assert "+two" in diff and "app.txt" in diff
    assert {"claw://task/{task_id}/log", "claw://task/{task_id}/diff"} <= templates
    assert text == "the agent said hello\n"


def test_an_agent_inside_an_attempt_cannot_approve_or_reject_itself(project, tmp_path):
    """The attack: an agent's own MCP client calls approve (and reject) on its task. Both are
    refused, and the task still waits for the person."""
    task_id = review_ready(project)
    attempt = project.store.latest_attempt(task_id)
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    async def calls(session):
        await session.initialize()
        return [await session.call_tool("approve", {"task_id": task_id}),
                await session.call_tool("reject", {"task_id": task_id, "feedback": "try again"}),
                await session.call_tool("add_task", {"title": "more work for me"})]

    results = _stdio(project.root, calls, env={"CLAW_TASK_ID": str(task_id), "CLAW_ATTEMPT_ID": str(attempt.id),
                                               "CLAW_OUTBOX": str(outbox)})
    assert all(r.is_error for r in results)
    assert "cannot approve or reject" in results[0].content[0].text
    assert "cannot approve or reject" in results[1].content[0].text
    store = Project(project.root).store
    assert store.get_task(task_id).state == TaskState.review
    assert store.latest_attempt(task_id).state == AttemptState.ready
    assert [t.id for t in store.list_tasks()] == [task_id]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _huge(url: str) -> tuple[int, dict]:
    """Announce a 2 MB body and send none of it: the answer must come before the body is read."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    connection.putrequest("POST", where.path)
    for name, value in {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                        "Content-Length": str(2 << 20)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    answer = connection.getresponse()
    try:
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_http_needs_the_token_and_bounds_the_body(project):
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    with http_server(project.root) as url:
        none = _post(url, ping, {})
        wrong = _post(url, ping, {"Authorization": "Bearer not-the-token"})
        huge = _huge(url)
    assert none[0] == 401 and none[1]["error"] == "missing or wrong token"
    assert wrong[0] == 401
    assert huge[0] == 413 and "over" in huge[1]["error"]


def test_http_token_is_made_once_and_kept_private(project):
    from clawfleet.mcp import mcp_token

    os.environ.pop("CLAW_MCP_TOKEN", None)
    token = mcp_token(project)
    path = project.run_dir / "mcp.token"
    assert path.read_text().strip() == token and len(token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert mcp_token(Project(project.root)) == token


def test_reject_with_feedback_sends_the_task_back_and_show_task_says_so(project):
    task_id = review_ready(project)

    async def calls(session):
        await session.discover()
        sent = _data(await session.call_tool("reject", {"task_id": task_id, "feedback": "use the new API"}))
        again = await session.call_tool("reject", {"task_id": task_id})
        shown = _data(await session.call_tool("show_task", {"task_id": task_id}))
        return sent, again, shown

    sent, again, shown = _stdio(project.root, calls)
    assert sent["sent_back"] is True
    assert again.is_error and "not waiting for review" in again.content[0].text
    assert (shown["state"], shown["attempt"]["state"]) == ("queued", "sent_back")
    task = Project(project.root).store.get_task(task_id)
    assert (task.state, task.feedback) == (TaskState.queued, "use the new API")


def test_http_on_a_port_in_use_is_one_line(project):
    with http_server(project.root) as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        second = subprocess.run([sys.executable, "-m", "clawfleet", "mcp", "--http", "--port", port],
                                cwd=project.root, env=_env({"CLAW_MCP_TOKEN": TOKEN}),
                                capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in second.stderr
    assert "Traceback" not in second.stderr
