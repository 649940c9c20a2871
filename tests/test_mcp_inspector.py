"""The MCP Inspector's CLI (`@modelcontextprotocol/inspector`, the protocol's own reference
client) against a real `claw mcp`, over stdio and streamable HTTP, in both protocol eras.

It needs Node >= 22.19: `.ci/run` installs both into .ci/node-inspector (the `node` npm package
ships the binary); without them these tests skip and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clawfleet
from clawfleet.project import Project

from test_mcp_eras import TOKEN, TOOLS, _env, http_server

pytestmark = [pytest.mark.slow, pytest.mark.real_cli]

PREFIX = Path(os.environ.get("CLAW_MCP_INSPECTOR_DIR", Path(__file__).resolve().parent.parent / ".ci" / "node-inspector"))
NODE_BIN = PREFIX / "node_modules" / "node" / "bin"
INSPECTOR = PREFIX / "node_modules" / ".bin" / "mcp-inspector"
ERAS = {"2025-11-25": "legacy", "2026-07-28": "modern"}


def _inspector(target: list[str], era: str, *args: str, cwd: Path, home: Path) -> dict:
    if not (INSPECTOR.exists() and (NODE_BIN / "node").exists()):
        pytest.skip(f"the MCP Inspector or its Node >= 22.19 is not in {PREFIX}; `bash .ci/run` installs them")
    env = _env({"PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}", "HOME": str(home)})
    done = subprocess.run([str(INSPECTOR), "--cli", *target, "--protocol-era", ERAS[era], *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_inspector_lists_the_tools_and_queues_a_task(project, tmp_path, transport, era):
    def run(target):
        listed = _inspector(target, era, "--method", "tools/list", cwd=project.root, home=tmp_path)
        called = _inspector(target, era, "--method", "tools/call", "--tool-name", "add_task",
                            "--tool-arg", "title=From the inspector", "importance=high",
                            cwd=project.root, home=tmp_path)
        return listed, called

    if transport == "stdio":
        # The Inspector hands its server only a few variables of its own: the source under test is passed.
        # (the folder clawfleet is imported from here: with an editable install PYTHONPATH is unset,
        # and the Inspector refuses an empty `-e NAME=`).
        source = Path(clawfleet.__file__).resolve().parents[1]
        listed, called = run(["-e", f"PYTHONPATH={source}", sys.executable, "-m", "clawfleet", "mcp"])
    else:
        with http_server(project.root) as url:
            listed, called = run([url, "--transport", "http", "--header", f"Authorization: Bearer {TOKEN}"])
    assert TOOLS <= {tool["name"] for tool in listed["tools"]}
    assert not called["isError"], called
    assert called["structuredContent"]["title"] == "From the inspector"
    task = Project(project.root).store.list_tasks()[0]
    assert (task.title, str(task.importance)) == ("From the inspector", "high")
