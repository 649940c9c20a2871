"""Setup and teardown run in the workspace's sandbox (issue 12, "Checks and setup run in the same
sandbox").

A recycled workspace keeps its ignored files (the installs setup made), and the agent that used
it could write them: a setup or teardown that sources `.venv/bin/activate` then runs what the
agent wrote there. Outside the sandbox that is the person's shell, with their HOME, keys and
sockets; inside it is nothing more than the agent had. Each test asserts the planted code found
nothing of the person's, and that the fleet went on.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from clawfleet import git, sandbox
from clawfleet.project import Project, initialize
from clawfleet.procs import ChildGroups
from clawfleet.workspace import WorkspacePool, meta_dir, prepare_integration

from conftest import agent_script, claw, write_config
from test_run import status_json

BWRAP, WHY_NOT = sandbox.probe()
pytestmark = pytest.mark.skipif(BWRAP is None, reason=f"no working bubblewrap here: {WHY_NOT}")

PLANTED = "sk-planted-provider-key-0123456789abcdef"
ACTIVATE = ". .venv/bin/activate"
SETUP = ["[ -f .venv/bin/activate ] || python3 -m venv --without-pip .venv", ACTIVATE]


@pytest.fixture
def person(tmp_path, monkeypatch) -> Path:
    """The person's HOME, with a private key; a provider key in their environment."""
    home = tmp_path / "person-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE-KEY-MARKER\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    return home


def payload(home: Path) -> str:
    """What the agent appends to the venv's activate script: the person's key and environment
    out to their HOME, where the agent cannot write."""
    return (f'cat {home}/.ssh/id_ed25519 > {home}/stolen-by-setup 2>/dev/null; '
            f'env | grep -c {PLANTED} > {home}/env-seen-by-setup 2>/dev/null; true')


def fleet_config(repo: Path, agent: str, setup_inputs: str = "") -> None:
    write_config(repo, f"""
        [fleet]
        default_agent = "planter"
        pool_size = 1
        max_attempts = 1
        [review]
        auto_approve = ["normal"]
        [sandbox]
        enabled = true
        [workspace]
        setup = {json.dumps(SETUP)}
        teardown = ["{ACTIVATE}"]
        {setup_inputs}
        [agents.planter]
        kind = "command"
        command = ["{agent}"]
        """)


def repo_with_venv_ignored(repo: Path) -> None:
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / "requirements.txt").write_text("greet==1.0\n")
    git.git("add", "-A", cwd=repo)
    git.git("commit", "-qm", "ignore the venv", cwd=repo, identity=True)


def test_teardown_runs_contained_in_a_workspace_an_agent_planted(repo, person):
    repo_with_venv_ignored(repo)
    planter = agent_script(repo, "planter", f"""\
        echo feature > "feature-$CLAW_TASK_ID.txt"
        [ -f .venv/bin/activate ] && echo '{payload(person)}' >> .venv/bin/activate
        """)
    fleet_config(repo, planter)
    assert claw(repo, "add", "Plant the venv").returncode == 0
    assert claw(repo, "run", timeout=180).returncode == 0
    assert status_json(repo)[0]["state"] == "merged"
    # The workspace went back to the pool with the planted script; removing it runs teardown.
    pruned = claw(repo, "workspace", "prune", "--pool")
    assert pruned.returncode == 0, pruned.stderr
    assert not (person / "stolen-by-setup").exists()
    assert not (person / "env-seen-by-setup").exists()
    # The fleet goes on.
    assert claw(repo, "add", "After the attack").returncode == 0
    assert claw(repo, "run", timeout=180).returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["merged", "merged"]


def test_setup_owed_again_runs_contained_in_the_attempts_runner(repo, person):
    """The agent changes a setup input, so the recycled workspace is set up again by the next
    attempt's runner: the planted activate runs there, contained."""
    repo_with_venv_ignored(repo)
    planter = agent_script(repo, "planter", f"""\
        echo feature > "feature-$CLAW_TASK_ID.txt"
        if [ -f .venv/bin/activate ] && ! grep -q stolen .venv/bin/activate; then
            echo '{payload(person)}' >> .venv/bin/activate
            echo "greet==2.0" > requirements.txt
        fi
        """)
    fleet_config(repo, planter, 'setup_inputs = ["requirements.txt"]')
    assert claw(repo, "add", "Plant the venv").returncode == 0
    assert claw(repo, "run", timeout=180).returncode == 0
    assert claw(repo, "add", "Use the workspace again").returncode == 0
    assert claw(repo, "run", timeout=180).returncode == 0
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged", "merged"], [t.get("reason") for t in tasks]
    setup_logs = list((repo / ".claw/run/attempts").glob("*/setup.log"))
    assert setup_logs, "the second attempt set its workspace up again"
    assert not (person / "stolen-by-setup").exists()
    assert not (person / "env-seen-by-setup").exists()


def test_the_pools_own_setup_sees_no_home_no_key_and_no_network(repo, person):
    """A warm workspace's setup, made by the pool itself: contained, offline when asked."""
    initialize(repo)
    listening = socket.create_server(("127.0.0.1", 0))   # the person's service on this machine
    port = listening.getsockname()[1]
    probe = (f"{{ ls {person}/.ssh >/dev/null 2>&1 && echo home=read || echo home=hidden; "
             f"echo keys=$(env | grep -c {PLANTED}); "
             f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' "
             ">/dev/null 2>&1 && echo net=on || echo net=off; } > probe.txt")
    write_config(repo, f"""
        [sandbox]
        enabled = true
        [workspace]
        setup_network = false
        setup = {json.dumps([probe])}
        """)
    pool = WorkspacePool(Project(repo), size=1)
    assert pool.fill(git.out("rev-parse", "main", cwd=repo)) == 1
    [workspace] = pool.ready()
    log = (meta_dir(pool.project, workspace.id) / "setup.log").read_text()
    listening.close()
    assert (workspace.path / "probe.txt").read_text().split() == ["home=hidden", "keys=0", "net=off"], log


def test_the_merge_queues_setup_runs_the_agents_code_contained(repo, person, tmp_path):
    """The merge worktree is set up at the agents' stacked commit when its setup inputs
    changed: the agent's Makefile runs there, in the sandbox."""
    (repo / "Makefile").write_text("deps:\n\techo installed\n")
    git.git("add", "-A", cwd=repo)
    git.git("commit", "-qm", "a Makefile", cwd=repo, identity=True)
    initialize(repo)
    write_config(repo, """
        [sandbox]
        enabled = true
        [workspace]
        setup = ["make deps"]
        setup_inputs = ["Makefile"]
        """)
    project = Project(repo)
    worktree = project.worktrees_dir / "integration"
    worktree.parent.mkdir(parents=True)
    git.add_detached_worktree(repo, worktree, git.rev(repo, "HEAD"))
    (worktree / "Makefile").write_text(f"deps:\n\t{payload(person)}\n")   # the agent's commit
    git.git("commit", "-qam", "faster deps", cwd=worktree, identity=True)
    policy = sandbox.resolve(project.config.sandbox, warn=print)
    WorkspacePool(project)  # the pool's store exists
    env, failure = prepare_integration(project, worktree, git.rev(worktree, "HEAD"),
                                       ChildGroups(tmp_path / "children"), policy)
    assert failure is None
    assert not (person / "stolen-by-setup").exists()
    assert not (person / "env-seen-by-setup").exists()
    project.store.close()
