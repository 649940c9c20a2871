"""Every agent kind, contained: no provider key, nothing of the person's HOME or checkout, no
socket outside its folders, no network but its model; and the fleet goes on.

Each agent runs the same probe (issue "Contain every agent", attacks 4 and 6) and writes what it
could reach into probe.txt in its worktree, which clawfleet commits as it commits any work.
"""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from clawfleet import git, sandbox
from clawfleet.llm.scripted import Script, ScriptedServer

from conftest import agent_script, claw, write_config
from test_agents_real import calculator_repo, configure, require, shell_tool
from test_run import status_json

BWRAP, WHY_NOT = sandbox.probe()
pytestmark = pytest.mark.skipif(BWRAP is None, reason=f"no working bubblewrap here: {WHY_NOT}")

PLANTED = "sk-planted-provider-key-0123456789abcdef"


@pytest.fixture
def person(tmp_path, monkeypatch):
    """The person's world: a HOME with a private key, a provider key in the environment, a
    UNIX socket of theirs listening (an agent, a database)."""
    home = tmp_path / "person-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE-KEY-MARKER\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED)
    monkeypatch.setenv("MY_SERVICE_TOKEN", PLANTED)
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "agent.sock"))
    listening.listen()
    yield {"home": home, "socket": tmp_path / "agent.sock"}
    listening.close()


def probe(repo: Path, person: dict) -> str:
    """One shell command: what the agent can reach, into probe.txt (counts and yes/no only).
    No command substitution: Gemini CLI's shell tool refuses `$(...)`."""
    return textwrap.dedent(f"""\
        {{ printf planted-in-env=; env | grep -c {PLANTED};
          cat {person['home']}/.ssh/id_ed25519 >/dev/null 2>&1 && echo home=read || echo home=hidden;
          cat {repo}/.claw/run/gateway.secret >/dev/null 2>&1 && echo gateway-secret=read || echo gateway-secret=hidden;
          ls {repo}/.claw/run/claw.db >/dev/null 2>&1 && echo store=visible || echo store=hidden;
          {sys.executable} -c "import socket; s = socket.socket(socket.AF_UNIX); s.connect('{person['socket']}')" 2>/dev/null && echo socket=open || echo socket=closed;
          printf shadow-bytes=; cat /etc/shadow 2>/dev/null | wc -c;
        }} > probe.txt""").replace("\n", " ")


def probed(repo: Path) -> dict[str, str]:
    commit = git.out("log", "--all", "--format=%H", "-1", "--", "probe.txt", cwd=repo)
    assert commit, "the agent's probe.txt was not committed"
    text = git.out("show", f"{commit}:probe.txt", cwd=repo)
    return dict(line.split("=", 1) for line in text.splitlines())


CONTAINED = {"planted-in-env": "0", "home": "hidden", "gateway-secret": "hidden", "store": "hidden",
             "socket": "closed", "shadow-bytes": "0"}


def test_a_command_agent_is_contained_and_the_fleet_goes_on(repo, person):
    agent = agent_script(repo, "prober", probe(repo, person) + "\necho $CLAW_TASK_ID > task-$CLAW_TASK_ID.txt"
                                                               "\necho probed > \"$CLAW_SUMMARY_FILE\"\n")
    write_config(repo, f"""
        [fleet]
        default_agent = "prober"
        max_attempts = 1
        [review]
        auto_approve = ["normal"]
        [sandbox]
        enabled = true
        [agents.prober]
        kind = "command"
        command = ["{agent}"]
        """)
    assert claw(repo, "add", "probe the sandbox").returncode == 0
    assert claw(repo, "run").returncode == 0
    assert probed(repo) == CONTAINED
    # The fleet goes on: the next task lands as usual.
    assert claw(repo, "add", "probe again").returncode == 0
    assert claw(repo, "run").returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["merged", "merged"]


def test_the_builtin_agents_commands_are_contained(repo, person):
    script = Script.from_rules([{"match": "probe", "steps": [{"command": probe(repo, person)},
                                                             {"done": "probed"}]}])
    with ScriptedServer(script) as server:
        write_config(repo, f"""
            [fleet]
            max_attempts = 1
            [review]
            auto_approve = ["normal"]
            [sandbox]
            enabled = true
            [agents.builtin]
            kind = "builtin"
            provider = "openai"
            model = "scripted"
            base_url = "{server.openai_base_url}"
            api_key_env = "OPENAI_API_KEY"
            """)
        assert claw(repo, "add", "probe the sandbox").returncode == 0
        assert claw(repo, "run").returncode == 0
    assert probed(repo) == CONTAINED
    assert status_json(repo)[0]["state"] == "merged"


@pytest.mark.real_cli
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "opencode"])
def test_a_real_cli_is_contained_and_reaches_only_its_gateway(repo, person, kind):
    """The CLI's own process in the sandbox, through the gateway: its model calls work (the
    attempt completes and its checks run), and nothing else of the person's is in reach."""
    require(kind)
    calculator_repo(repo)
    script = Script.from_rules([{"match": "probe", "steps": [shell_tool(kind, probe(repo, person)),
                                                             {"text": "probed"}]}])
    with ScriptedServer(script) as server:
        configure(repo, kind, server, gateway=True)
        assert claw(repo, "add", "probe the sandbox").returncode == 0
        assert claw(repo, "run", timeout=600).returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "review", task["reason"]
    assert probed(repo) == CONTAINED
