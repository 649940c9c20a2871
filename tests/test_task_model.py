"""A task's own model and reasoning effort, over its agent's config."""

from __future__ import annotations

import json

from clawfleet.llm.scripted import Script, ScriptedServer

from conftest import claw, write_config
from test_run import status_json


def test_a_task_runs_on_the_model_it_asks_for(repo):
    script = Script.from_rules([{"match": "Create notes", "steps": [
        {"command": "printf 'x\\n' > notes.txt"}, {"done": "created notes.txt"}]}])
    with ScriptedServer(script) as server:
        write_config(repo, f"""
            [agents.builtin]
            kind = "builtin"
            model = "everyday-model"
            base_url = "{server.openai_base_url}"
            [agents.codex]
            kind = "codex"
            model = "gpt-5-codex"
            """)
        assert claw(repo, "add", "Create notes", "--model", "careful-model").returncode == 0
        assert claw(repo, "run").returncode == 0
        models = {r["body"]["model"] for r in server.requests}
    assert models == {"careful-model"}
    task = status_json(repo)[0]
    assert task["model"] == "careful-model" and task["latest_attempt"]["state"] == "ready"
    spec = json.loads((repo / ".claw/run/attempts/1/spec.json").read_text())
    assert spec["agent"]["model"] == "careful-model"

    # Bad input is refused when the task is added, saying why.
    no_effort = claw(repo, "add", "Think hard", "--effort", "high")
    assert no_effort.returncode == 1
    assert "agent 'builtin' (kind builtin) has no reasoning effort to set" in no_effort.stderr
    wrong = claw(repo, "add", "Think hard", "--agent", "codex", "--effort", "enormous")
    assert wrong.returncode == 1 and "agent 'codex': effort 'enormous'" in wrong.stderr
    assert claw(repo, "add", "Think hard", "--agent", "codex", "--effort", "high").returncode == 0
    assert status_json(repo)[-1]["effort"] == "high"
