"""A real ACP agent for tests: it speaks the Agent Client Protocol on stdin/stdout (the SDK's agent
side) and does what a JSON file tells it, so a test can make it ask for anything an agent could.

    ACP_TEST_ACTIONS=actions.json python3 tests/acp_agent.py

The file (or the variable itself: a sandboxed agent sees no file of the test's) holds one list of actions per prompt it gets (the N-th prompt this HOME has seen takes
the N-th list; the last list repeats). Actions: {"say": text}, {"write": path, "content": text},
{"read": path}, {"ask": {"kind", "title", "locations"}} (a permission request), {"tool": {"title",
"kind", "locations"}} (a tool call started and completed), {"plan": [entry, ...]}, {"sleep": s},
{"shell": command}, {"exit": code}, {"usage": [input, output]}, {"stop": reason}. What each one got back is appended to
$HOME/acp-test-results.jsonl. Sessions are kept in $HOME/acp-test-sessions/ and can be loaded
(their earlier prompts are replayed as user messages).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import acp
from acp.schema import (
    AgentCapabilities,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallLocation,
    ToolCallUpdate,
    Usage,
)

HOME = Path(os.environ["HOME"])
SESSIONS = HOME / "acp-test-sessions"
RESULTS = HOME / "acp-test-results.jsonl"
COUNTER = HOME / "acp-test-prompts"


def record(action: dict, **result: Any) -> None:
    with RESULTS.open("a") as handle:
        handle.write(json.dumps({"action": action, **result}) + "\n")


class TestAgent:
    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, client_capabilities: Any = None,
                         client_info: Any = None, **_: Any) -> InitializeResponse:
        record({"initialize": True}, pid=os.getpid(), client=client_info.name if client_info else None,
               fs=client_capabilities.fs.model_dump() if client_capabilities and client_capabilities.fs else None,
               terminal=client_capabilities.terminal if client_capabilities else None)
        return InitializeResponse(protocol_version=acp.PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities(load_session=True),
                                  agent_info=Implementation(name="test-agent", version="1.0"))

    async def new_session(self, cwd: str, mcp_servers: Any = None, **_: Any) -> NewSessionResponse:
        session_id = uuid.uuid4().hex
        SESSIONS.mkdir(parents=True, exist_ok=True)
        (SESSIONS / f"{session_id}.json").write_text(json.dumps({"cwd": cwd, "prompts": []}))
        record({"new_session": cwd}, session_id=session_id)
        return NewSessionResponse(session_id=session_id)

    async def load_session(self, cwd: str, session_id: str, mcp_servers: Any = None, **_: Any) -> LoadSessionResponse:
        path = SESSIONS / f"{session_id}.json"
        if not path.exists():
            raise acp.RequestError.resource_not_found(session_id)
        for prompt in json.loads(path.read_text())["prompts"]:
            await self.conn.session_update(session_id, acp.update_user_message_text(prompt))
        record({"load_session": session_id}, cwd=cwd)
        return LoadSessionResponse()

    async def prompt(self, prompt: list[Any], session_id: str, **_: Any) -> PromptResponse:
        text = "".join(getattr(block, "text", "") for block in prompt)
        path = SESSIONS / f"{session_id}.json"
        session = json.loads(path.read_text())
        session["prompts"].append(text)
        path.write_text(json.dumps(session))
        number = int(COUNTER.read_text()) if COUNTER.exists() else 0
        COUNTER.write_text(str(number + 1))
        given = os.environ["ACP_TEST_ACTIONS"]   # the JSON itself, or a file holding it
        plans = json.loads(given if given.startswith("[") else Path(given).read_text())
        actions = plans[min(number, len(plans) - 1)]
        usage, stop = None, "end_turn"
        for index, action in enumerate(actions):
            if "say" in action:
                await self.conn.session_update(session_id, acp.update_agent_message_text(action["say"]))
            elif "write" in action:
                try:
                    await self.conn.write_text_file(session_id=session_id, path=action["write"],
                                                    content=action["content"])
                    record(action, ok=True)
                except acp.RequestError as error:
                    record(action, ok=False, error=str(error), data=error.data)
            elif "read" in action:
                try:
                    got = await self.conn.read_text_file(session_id=session_id, path=action["read"])
                    record(action, ok=True, content=got.content)
                except acp.RequestError as error:
                    record(action, ok=False, error=str(error), data=error.data)
            elif "ask" in action:
                ask = action["ask"]
                call = ToolCallUpdate(tool_call_id=f"ask-{index}", title=ask.get("title", "a tool"),
                                      kind=ask.get("kind"), status="pending",
                                      locations=[ToolCallLocation(path=p) for p in ask.get("locations", [])])
                options = [PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                           PermissionOption(option_id="always", name="Always", kind="allow_always"),
                           PermissionOption(option_id="no", name="Reject", kind="reject_once")]
                answer = await self.conn.request_permission(session_id=session_id, tool_call=call, options=options)
                record(action, outcome=answer.outcome.model_dump())
            elif "tool" in action:
                tool = action["tool"]
                locations = [ToolCallLocation(path=p) for p in tool.get("locations", [])]
                await self.conn.session_update(session_id, acp.start_tool_call(
                    f"tool-{index}", tool["title"], kind=tool.get("kind"), status="in_progress", locations=locations))
                await self.conn.session_update(session_id, acp.update_tool_call(
                    f"tool-{index}", status="completed",
                    content=[acp.tool_content(acp.text_block(tool.get("output", "done")))]))
            elif "plan" in action:
                await self.conn.session_update(session_id, acp.update_plan(
                    [acp.plan_entry(entry, status="completed" if n == 0 else "pending")
                     for n, entry in enumerate(action["plan"])]))
            elif "shell" in action:   # what any agent with a shell can do in its worktree
                done = await asyncio.create_subprocess_shell(action["shell"])
                record(action, status=await done.wait())
            elif "sleep" in action:
                await asyncio.sleep(action["sleep"])
            elif "exit" in action:
                sys.stdout.flush()
                os._exit(action["exit"])
            elif "usage" in action:
                used_in, used_out = action["usage"]
                usage = Usage(input_tokens=used_in, output_tokens=used_out, total_tokens=used_in + used_out)
            elif "stop" in action:
                stop = action["stop"]
        return PromptResponse(stop_reason=stop, usage=usage)


if __name__ == "__main__":
    asyncio.run(acp.run_agent(TestAgent()))
