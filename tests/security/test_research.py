"""Research experiments are attempts too (issue 12): the agent and the experiment that runs its
code are contained alike, nothing that looks like a secret goes on the research branch, and a
slot whose git files an agent rewrote is made again instead of trusted."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from clawfleet import git, sandbox

from conftest import agent_script, claw, write_config

BWRAP, WHY_NOT = sandbox.probe()
pytestmark = pytest.mark.skipif(BWRAP is None, reason=f"no working bubblewrap here: {WHY_NOT}")

PLANTED = "sk-planted-provider-key-0123456789abcdef"
OBJECTIVE = """\
import json
x = json.load(open("params.json"))["x"]
print(f"score={(x - 3.0) ** 2:.5f}")
"""
CONFIG = """\
[research]
command = "python3 objective.py"
metric_regex = "score=(\\\\S+)"
goal = "minimize"
time_budget = 20
scope = ["params.json", "objective.py"]
agent = "prober"
[sandbox]
enabled = {sandboxed}
[agents.prober]
kind = "command"
command = ["{agent}"]
"""


@pytest.fixture
def lab(tmp_path: Path, monkeypatch) -> Path:
    """A research project, and the person's world: a private key in HOME, a key in the
    environment, a service listening on this machine."""
    home = tmp_path / "person-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE-KEY-MARKER\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    path = tmp_path / "lab"
    git.init_repo(path, {"objective.py": OBJECTIVE, "params.json": '{"x": -2.0}\n',
                         "program.md": "# Lower the score\n", "README.md": "# lab\n"})
    return path


def configure(lab: Path, agent_body: str, sandboxed: bool = True) -> None:
    agent = agent_script(lab, "prober", agent_body)
    write_config(lab, CONFIG.format(agent=agent, sandboxed=str(sandboxed).lower()))


def results(lab: Path) -> list[dict]:
    lines = (lab / ".claw/run/research/default/results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_the_agent_and_its_experiment_reach_nothing_of_the_persons(lab):
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    home = Path(lab.parent / "person-home")
    configure(lab, f"""\
        seen=$(cat {home}/.ssh/id_ed25519 2>/dev/null && echo read || echo hidden)
        echo '{{"x": 3.0}}' > params.json
        cat >> objective.py <<EOF
        import os, socket
        print("agent-home=$seen")
        print("experiment-home=" + ("read" if os.path.exists("{home}/.ssh/id_ed25519") else "hidden"))
        print("experiment-keys=" + str(sum("{PLANTED[:10]}" "{PLANTED[10:]}" in v for v in os.environ.values())))
        try:
            socket.create_connection(("127.0.0.1", {port}), 2); print("experiment-net=on")
        except OSError:
            print("experiment-net=off")
        EOF
        echo "probe what an experiment reaches"
        """)
    result = claw(lab, "research", "run", "--max-experiments", "1", timeout=180)
    listening.close()
    assert result.returncode == 0, result.stderr
    [_, row] = results(lab)
    said = (lab / f".claw/run/research/default/experiments/{row['experiment']}/run.log").read_text()
    assert "agent-home=hidden" in said and "experiment-home=hidden" in said, said
    assert "experiment-keys=0" in said and "experiment-net=off" in said, said
    assert row["status"] == "keep"


def test_an_experiment_whose_commit_holds_a_secret_never_goes_on_the_research_branch(lab):
    configure(lab, """\
        echo '{"x": 3.0}' > params.json
        printf -- '-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF0qJ\\n-----END RSA PRIVATE KEY-----\\n' > key.txt
        sed 's/^/# /' key.txt >> objective.py && rm key.txt
        echo "a key for the objective"
        """)
    start = git.branch_tip(lab, "main")
    result = claw(lab, "research", "run", "--max-experiments", "1", timeout=180)
    assert result.returncode == 0, result.stderr
    [_, row] = results(lab)
    assert row["status"] == "discard"
    assert "looks like a secret" in row["reason"] and "objective.py" in row["reason"]
    assert "MIIEowIBAAKCAQEA" not in row["reason"]
    assert git.branch_tip(lab, "claw/research/default") == start


def test_a_slot_whose_git_file_the_agent_rewrote_is_made_again_and_the_run_goes_on(lab, tmp_path):
    """Unsandboxed (no read-only `.git` file), the agent redirects its worktree's git; clawfleet
    runs no git there, makes the slot again, and the next experiment is measured as usual."""
    counter = tmp_path / "calls"
    configure(lab, f"""\
        n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
        if [ $n = 1 ]; then
            mkdir -p .evil && echo "gitdir: $PWD/.evil" > .git && echo "redirect git"
        else
            echo '{{"x": 3.0}}' > params.json && echo "x at 3"
        fi
        """, sandboxed=False)
    result = claw(lab, "research", "run", "--max-experiments", "2", "--parallel", "1", timeout=180)
    assert result.returncode == 0, result.stderr
    rows = results(lab)
    assert [row["status"] for row in rows] == ["baseline", "crash", "keep"], rows
    assert "tampered" in rows[1]["reason"]
