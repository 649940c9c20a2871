"""The built-in agent against the scripted model server, over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawfleet.agents import AgentJob
from clawfleet.agents.builtin import BuiltinAgent, FormatError, parse_reply, truncate, Done
from clawfleet.config import BuiltinAgentConfig
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.procs import ChildGroups

from conftest import claw, write_config
from test_run import status_json


def job(tmp_path: Path, workspace: Path, prompt: str = "Add a file", deadline: float = 60) -> AgentJob:
    import time
    attempt_dir = tmp_path / "attempt"
    attempt_dir.mkdir(exist_ok=True)
    prompt_file = attempt_dir / "prompt-0.md"
    prompt_file.write_text(prompt)
    return AgentJob(task_id=1, attempt_id=1, agent_name="builtin", workspace=workspace,
                    attempt_dir=attempt_dir, prompt=prompt, prompt_file=prompt_file,
                    log=attempt_dir / "agent.log", deadline=time.time() + deadline,
                    children=ChildGroups(attempt_dir / "children"))


def agent_for(server: ScriptedServer, **overrides) -> BuiltinAgent:
    config = BuiltinAgentConfig(provider="openai", model="scripted", base_url=server.openai_base_url,
                                **overrides)
    return BuiltinAgent("builtin", config)


def test_parse_reply():
    assert parse_reply("THOUGHT: look\n```bash\nls -la\n```\n") == "ls -la"
    with pytest.raises(Done) as done:
        parse_reply("DONE: added the thing")
    assert str(done.value) == "added the thing"
    with pytest.raises(FormatError):
        parse_reply("I think we should look at the files")
    with pytest.raises(FormatError):
        parse_reply("```bash\nls\n```\n```bash\npwd\n```")


def test_truncate_keeps_head_and_tail():
    text = "a" * 500 + "b" * 500
    short = truncate(text, 200)
    assert short.startswith("a" * 100) and short.endswith("b" * 100)
    assert "800 characters elided" in short
    assert truncate("small", 200) == "small"


def test_agent_runs_commands_until_done(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    script = Script.from_rules([{"match": "Add a file", "steps": [
        {"command": "echo hello > hello.txt && ls"},
        {"text": "no command here"},
        {"command": "cat hello.txt"},
        {"done": "wrote hello.txt"},
    ]}])
    with ScriptedServer(script) as server:
        outcome = agent_for(server).run(job(tmp_path, workspace))
        bodies = [r["body"] for r in server.requests]
    assert outcome.error is None and outcome.summary == "wrote hello.txt"
    assert (workspace / "hello.txt").read_text() == "hello\n"
    assert outcome.input_tokens > 0 and outcome.output_tokens > 0
    # The model saw the command's output, and the format error, in the conversation.
    last = bodies[-1]["messages"]
    assert any("hello.txt" in m["content"] and "exit code 0" in m["content"] for m in last if m["role"] == "user")
    assert any("no ```bash block" in m["content"] for m in last if m["role"] == "user")
    trajectory = json.loads((tmp_path / "attempt" / "trajectory-0.json").read_text())
    assert trajectory[-1]["content"] == "DONE: wrote hello.txt"


def test_step_limit(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    script = Script.from_rules([{"steps": [{"command": "true"}] * 10}])
    with ScriptedServer(script) as server:
        outcome = agent_for(server, max_steps=3).run(job(tmp_path, workspace))
        assert len(server.requests) == 3
    assert outcome.error == "step limit reached (3 steps)"


def test_output_is_truncated_for_the_model(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    script = Script.from_rules([{"steps": [{"command": "seq 1 100000"}, {"done": "ok"}]}])
    with ScriptedServer(script) as server:
        agent_for(server, output_limit=1000).run(job(tmp_path, workspace))
        observation = server.requests[-1]["body"]["messages"][-1]["content"]
    assert len(observation) < 1300 and "characters elided" in observation
    assert observation.rstrip().endswith("100000")


def test_unreachable_model_fails_the_attempt_clearly(tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = BuiltinAgentConfig(provider="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1",
                                request_timeout=5)
    outcome = BuiltinAgent("builtin", config).run(job(tmp_path, workspace))
    assert outcome.error and "cannot reach the model endpoint" in outcome.error


def test_claw_run_with_the_builtin_agent_and_anthropic_api(repo):
    script = Script.from_rules([{"match": "Create notes", "steps": [
        {"command": "printf 'remember\\n' > notes.txt"},
        {"done": "created notes.txt"},
    ]}])
    with ScriptedServer(script) as server:
        write_config(repo, f"""
            [review]
            auto_approve = ["normal"]
            [checks]
            commands = ["test -s notes.txt"]
            [agents.builtin]
            kind = "builtin"
            provider = "anthropic"
            model = "scripted"
            base_url = "{server.url}"
            """)
        claw(repo, "add", "Create notes")
        result = claw(repo, "run")
        assert result.returncode == 0, result.stderr
        assert server.requests[0]["path"].endswith("/v1/messages")
    task = status_json(repo)[0]
    assert task["state"] == "merged"
    assert task["latest_attempt"]["summary"] == "created notes.txt"
    assert task["latest_attempt"]["input_tokens"] > 0
    assert (repo / "notes.txt").read_text() == "remember\n"


def test_no_model_configured_fails_with_the_fix(repo):
    write_config(repo, """
        [agents.builtin]
        kind = "builtin"
        """)
    claw(repo, "add", "anything")
    env = {k: "" for k in ("CLAW_MODEL", "OPENAI_MODEL", "ANTHROPIC_MODEL", "OPENAI_API_KEY",
                           "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")}
    result = claw(repo, "run", env=env)   # refused before anything starts
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no model configured for agent 'builtin'" in result.stderr and "fake-llm" in result.stderr
    assert status_json(repo)[0]["state"] == "queued"
