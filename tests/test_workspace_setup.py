"""Workspaces ready to run: copied `.env`, a real offline install as setup, own ports, warm pool,
setup again on a lock-file change, early failure without the agent, doctor and prune."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import claw, write_config

from clawfleet import git
from clawfleet.procs import pid_alive
from clawfleet.project import Project, initialize
from clawfleet.workspace import WorkspacePool, meta_dir, read_setup

SETUP = ("python3 -m pip install --quiet --disable-pip-version-check --no-index --find-links wheels "
         "--upgrade --target .deps -r requirements.txt && echo $CLAW_PORT >> \"$SETUP_RUNS\"")


def make_wheel(folder: Path, version: str) -> None:
    """A real wheel of a one-module package `greet`, installable with `pip --no-index`."""
    name = f"greet-{version}"
    files = {
        "greet.py": f"def hello():\n    return 'hello from greet {version}'\n",
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: greet\nVersion: {version}\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{name}.dist-info/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{name}.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def commit_all(repo: Path, message: str) -> str:
    """Commit what the person changed, not their untracked .env and fixtures."""
    git.git("add", "--all", "--", ".", ":(exclude).env", ":(exclude)fixtures", cwd=repo)
    git.git("commit", "--quiet", "-m", message, cwd=repo, identity=True)
    return git.out("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    """A project whose setup installs a local package offline, with an untracked `.env`."""
    repo = tmp_path / "app"
    git.init_repo(repo, {"README.md": "# app\n", "requirements.txt": "greet==1.0\n",
                         ".gitignore": ".deps/\n__pycache__/\n"})
    make_wheel(repo / "wheels", "1.0")
    make_wheel(repo / "wheels", "2.0")
    commit_all(repo, "vendored wheels")
    (repo / ".env").write_text("SECRET_TOKEN=swordfish\n")  # untracked and not ignored
    (repo / "fixtures").mkdir()
    (repo / "fixtures" / "big.bin").write_bytes(b"\0" * 4096)  # untracked too
    initialize(repo)
    return repo


def configure(repo: Path, *, setup: str = SETUP, extra: str = "", fleet: str = "", pool_size: int = 2,
              checks: tuple[str, ...] = ()) -> None:
    write_config(repo, f"""
        [fleet]
        slots = 2
        pool_size = {pool_size}
        attempt_timeout = 90
        max_attempts = 1
        {fleet}
        [checks]
        commands = {json.dumps(list(checks))}
        [review]
        auto_approve = ["low", "normal"]
        [workspace]
        include = [".env"]
        link = ["fixtures/big.bin"]
        setup = [{json.dumps(setup)}]
        ports = ["WEB_PORT", "DB_PORT"]
        env = {{ APP_URL = "http://127.0.0.1:${{WEB_PORT}}/", SETUP_RUNS = "{repo.parent / 'setup-runs.txt'}" }}
        {extra}
        """)


def greet(worktree: Path) -> str:
    code = "import sys; sys.path.insert(0, '.deps'); import greet; print(greet.hello())"
    result = subprocess.run([sys.executable, "-c", code], cwd=worktree, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def setup_runs(repo: Path) -> int:
    runs = repo.parent / "setup-runs.txt"
    return len(runs.read_text().split()) if runs.exists() else 0


def test_warm_workspace_is_installed_has_env_and_keeps_it_out_of_commits(app_repo):
    configure(app_repo)
    project = Project(app_repo)
    pool = WorkspacePool(project, size=1)
    base = project.target_tip()
    assert pool.fill(base) == 1
    assert setup_runs(app_repo) == 1
    [warm] = pool.ready()
    assert greet(warm.path) == "hello from greet 1.0"
    assert (warm.path / ".env").read_text() == "SECRET_TOKEN=swordfish\n"
    assert os.path.samefile(warm.path / "fixtures" / "big.bin", app_repo / "fixtures" / "big.bin")
    record = read_setup(meta_dir(project, warm.id) / "setup.json")
    assert record.ok and record.commit == base

    workspace = pool.acquire(1, "claw/1-work", base)
    assert workspace.path == warm.path and workspace.setup is None  # warm: nothing to set up again
    assert setup_runs(app_repo) == 1
    env = workspace.env
    port = int(env["CLAW_PORT"])
    assert (int(env["WEB_PORT"]), int(env["DB_PORT"])) == (port + 1, port + 2)
    assert env["APP_URL"] == f"http://127.0.0.1:{port + 1}/"
    assert env["PIP_CACHE_DIR"].startswith(str(project.run_dir / "cache"))

    # The agent's work is committed; the copied files never are, whatever adds everything.
    (workspace.path / "feature.txt").write_text("work\n")
    (workspace.path / ".env").write_text("SECRET_TOKEN=changed-by-agent\n")
    snapshot = git.snapshot_commit(workspace.path)
    head = git.commit_all(workspace.path, "attempt work")
    for commit in (snapshot, head):
        files = git.out("ls-tree", "-r", "--name-only", commit, cwd=app_repo).split()
        assert "feature.txt" in files and ".env" not in files and "fixtures/big.bin" not in files
    assert (app_repo / ".env").read_text() == "SECRET_TOKEN=swordfish\n"  # the person's copy

    # Recycled, it keeps its installs (ignored files) and its path; the copies come back fresh.
    pool.release(workspace.path, recycle_at=base)
    [again] = pool.ready()
    assert again.path == warm.path and greet(again.path) == "hello from greet 1.0"
    assert pool.acquire(2, "claw/2-more", base).setup is None
    assert (again.path / ".env").read_text() == "SECRET_TOKEN=swordfish\n"


def test_a_lock_file_change_runs_setup_again(app_repo):
    configure(app_repo)
    project = Project(app_repo)
    pool = WorkspacePool(project, size=2)
    first = project.target_tip()
    pool.fill(first)
    assert setup_runs(app_repo) == 2

    (app_repo / "README.md").write_text("# app, documented\n")  # not a setup input
    unrelated = commit_all(app_repo, "docs")
    assert pool.acquire(1, "claw/1-docs", unrelated).setup is None

    (app_repo / "requirements.txt").write_text("greet==2.0\n")
    bumped = commit_all(app_repo, "greet 2.0")
    workspace = pool.acquire(2, "claw/2-bump", bumped)
    plan = workspace.setup
    assert plan is not None and plan.commit == bumped
    # What the runner does before the agent starts:
    from clawfleet.procs import ChildGroups
    from clawfleet.workspace import run_setup

    result = run_setup(plan, workspace.path, workspace.env, ChildGroups(app_repo.parent / "kids"),
                       app_repo.parent / "setup.log")
    assert result.ok and setup_runs(app_repo) == 3
    assert greet(workspace.path) == "hello from greet 2.0"
    pool.release(workspace.path, recycle_at=bumped)
    assert pool.acquire(3, "claw/3-next", bumped).setup is None  # set up for 2.0 already


def test_an_attempt_that_changes_the_lock_file_leaves_its_workspace_to_set_up_again(app_repo):
    configure(app_repo)
    project = Project(app_repo)
    pool = WorkspacePool(project, size=1)
    base = project.target_tip()
    pool.fill(base)
    workspace = pool.acquire(1, "claw/1-bump", base)
    (workspace.path / "requirements.txt").write_text("greet==2.0\n")
    git.commit_all(workspace.path, "bump greet")
    pool.release(workspace.path, recycle_at=base)
    assert pool.acquire(2, "claw/2-next", base).setup is not None


AGENT = '''\
#!{python}
"""Serve this workspace on $WEB_PORT while the other attempt serves its own, then read both."""
import functools, http.server, json, os, sys, threading, time, urllib.request
from pathlib import Path

stamps, task = Path({stamps!r}), os.environ["CLAW_TASK_ID"]
here = Path.cwd()
(here / f"whoami-{{task}}.txt").write_text(f"task {{task}}")
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(here))
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEB_PORT"])), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
(stamps / f"{{task}}.port").write_text(os.environ["WEB_PORT"])

def wait_for(suffix):
    deadline = time.time() + 40
    while len(list(stamps.glob("*" + suffix))) < 2 and time.time() < deadline:
        time.sleep(0.05)

wait_for(".port")
served = {{p.stem: urllib.request.urlopen(f"http://127.0.0.1:{{p.read_text()}}/whoami-{{p.stem}}.txt", timeout=5).read().decode()
          for p in stamps.glob("*.port")}}
sys.path.insert(0, ".deps")
import greet
(stamps / f"{{task}}.json").write_text(json.dumps({{
    "served": served, "env": Path(".env").read_text(), "greet": greet.hello(),
    "claw_port": os.environ["CLAW_PORT"], "app_url": os.environ["APP_URL"]}}))
wait_for(".json")
server.shutdown()
(here / f"result-{{task}}.txt").write_text("done\\n")
'''


def test_two_attempts_serve_http_on_their_own_ports_at_the_same_time(app_repo):
    stamps = app_repo.parent / "stamps"
    stamps.mkdir()
    agent = app_repo.parent / "server_agent.py"
    agent.write_text(AGENT.format(python=sys.executable, stamps=str(stamps)))
    agent.chmod(0o755)
    # The checks need the installed package and the .env: in the attempts' workspaces, and again
    # in the merge queue's worktree when the second attempt is re-checked on top of the first.
    needs_install = "test -f .env && python3 -c 'import sys; sys.path.insert(0, \".deps\"); import greet'"
    configure(app_repo, fleet='default_agent = "server"', checks=(needs_install,))
    with open(app_repo / ".claw" / "config.toml", "a") as config:
        config.write(f'\n[agents.server]\nkind = "command"\ncommand = ["{agent}"]\n')
    for title in ("first", "second"):
        assert claw(app_repo, "add", title).returncode == 0
    result = claw(app_repo, "run", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads(claw(app_repo, "status", "--all", "--json").stdout)
    assert [t["state"] for t in tasks] == ["merged", "merged"], tasks
    seen = {task: json.loads((stamps / f"{task}.json").read_text()) for task in ("1", "2")}
    ports = {task: int((stamps / f"{task}.port").read_text()) for task in ("1", "2")}
    assert ports["1"] != ports["2"]
    for task, report in seen.items():
        # Both servers were up at once, each answering for its own workspace.
        assert report["served"] == {"1": "task 1", "2": "task 2"}
        assert report["env"] == "SECRET_TOKEN=swordfish\n"
        assert report["greet"] == "hello from greet 1.0"
        assert report["app_url"] == f"http://127.0.0.1:{ports[task]}/"
        assert int(report["claw_port"]) + 1 == ports[task]
    # The work landed; the copied .env never reached any commit.
    assert (app_repo / "result-1.txt").exists() and (app_repo / "result-2.txt").exists()
    assert git.out("log", "--all", "--format=%H", "--", ".env", "fixtures", cwd=app_repo) == ""
    merge_checks = list((app_repo / ".claw" / "run" / "attempts").glob("*/checks/merge-*.log"))
    assert merge_checks and all("[exit 0]" in log.read_text() for log in merge_checks)


def test_a_setup_failure_fails_the_attempt_early_and_the_agent_never_runs(app_repo):
    marker = app_repo.parent / "agent-ran"
    agent = app_repo.parent / "agent.sh"
    agent.write_text(f"#!/usr/bin/env bash\ntouch {marker}\necho x > x.txt\n")
    agent.chmod(0o755)
    configure(app_repo, setup="echo resolving; echo 'ERROR: no matching distribution for nope==9' >&2; exit 3",
              fleet='default_agent = "marker"', pool_size=1)
    with open(app_repo / ".claw" / "config.toml", "a") as config:
        config.write(f'\n[agents.marker]\nkind = "command"\ncommand = ["{agent}"]\n')
    assert claw(app_repo, "add", "doomed").returncode == 0
    result = claw(app_repo, "run", timeout=120)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    [task] = json.loads(claw(app_repo, "status", "--all", "--json").stdout)
    attempt = task["latest_attempt"]
    assert task["state"] == "failed" and attempt["state"] == "failed"
    assert attempt["reason"].startswith("workspace setup failed: `echo resolving;")
    assert "exited 3" in attempt["reason"] and "no matching distribution for nope==9" in attempt["reason"]
    assert attempt["input_tokens"] == 0 and attempt["output_tokens"] == 0
    assert "workspace setup failed" in claw(app_repo, "show", "1").stdout
    doctor = claw(app_repo, "workspace", "doctor")
    assert doctor.returncode == 1
    assert "setup failed" in doctor.stdout and "no matching distribution for nope==9" in doctor.stdout
    assert "resolving" in doctor.stdout  # the command's own output, from its log


def test_prune_removes_a_stale_staging_worktree_and_keeps_work_and_warm_ones(app_repo):
    configure(app_repo, setup="true")
    project = Project(app_repo)
    pool = WorkspacePool(project, size=1)
    base = project.target_tip()
    # A workspace whose attempt is long over (its record says in use).
    leftover = pool.acquire(77, "claw/77-old", base)
    (leftover.path / "done.txt").write_text("x\n")
    git.commit_all(leftover.path, "work on a branch")
    pool.fill(base)
    [warm] = pool.ready()
    # A crash while filling the pool left a staging checkout behind.
    staging = project.worktrees_dir / "staging-1234abcd"
    git.add_detached_worktree(app_repo, staging, base)
    # A stray worktree with someone's uncommitted work in it.
    stray = project.worktrees_dir / "ws-deadbeef00"
    git.git("worktree", "add", "--quiet", "-b", "claw/9-stray", str(stray), base, cwd=app_repo)
    (stray / "README.md").write_text("unsaved edit\n")
    # A worktree some other tool keeps here, clean: not the pool's to judge.
    other = project.worktrees_dir / "someone-elses"
    git.add_detached_worktree(app_repo, other, base)

    listed = json.loads(claw(app_repo, "workspace", "list", "--json").stdout)
    states = {Path(i["path"]).name: i["state"] for i in listed}
    assert states[staging.name] == "untracked" and states[warm.path.name] == "ready"
    assert states[leftover.path.name] == "in_use" and all(i["disk_bytes"] > 0 for i in listed)

    result = claw(app_repo, "workspace", "prune", "--json")
    assert result.returncode == 0, result.stderr
    report = {Path(i["path"]).name: i for i in json.loads(result.stdout)}
    assert report[staging.name]["action"] == "removed" and not staging.exists()
    assert report[leftover.path.name]["action"] == "removed" and not leftover.path.exists()
    assert report[stray.name]["action"] == "kept" and "uncommitted" in report[stray.name]["reason"]
    assert (stray / "README.md").read_text() == "unsaved edit\n"
    assert warm.path.name not in report and warm.path.exists()
    assert report[other.name]["action"] == "kept" and other.exists()
    # Branches are never pruned: the leftover's commit is still there.
    assert git.branch_tip(app_repo, "claw/77-old") is not None
    assert str(staging) not in {str(i.path) for i in git.worktrees(app_repo)}


def test_ports_of_live_workspaces_never_collide_and_come_back_on_removal(app_repo):
    torn_down = app_repo.parent / "torn-down.txt"
    configure(app_repo, setup="true", extra="port_range = [31000, 31029]\nports_per_workspace = 10\n"
                                            f'teardown = ["echo $CLAW_PORT $PWD >> {torn_down}"]')
    project = Project(app_repo)
    pool = WorkspacePool(project, size=0)
    base = project.target_tip()
    taken = [pool.acquire(n, f"claw/{n}-p", base) for n in (1, 2, 3)]
    assert sorted(w.port_base for w in taken) == [31000, 31010, 31020]
    with pytest.raises(Exception, match="no free block of 10 ports"):
        pool.acquire(4, "claw/4-p", base)
    pool.release(taken[1].path)  # pool size 0: removed after its teardown, its ports freed
    assert torn_down.read_text() == f"31010 {taken[1].path}\n" and not taken[1].path.exists()
    assert pool.acquire(5, "claw/5-p", base).port_base == 31010


def test_shared_venv_is_made_once_and_shared_read_only(app_repo):
    # The venv is made without pip (fast); the outer pip installs into it. Inside, `python` is the venv's.
    venv_setup = (f'{sys.executable} -m pip --python "$VIRTUAL_ENV/bin/python" install --quiet '
                  '--disable-pip-version-check --no-index --find-links wheels -r requirements.txt')
    configure(app_repo, setup="python -c 'import greet; print(greet.hello())' > greeted.txt",
              extra=f'shared_venv = true\nvenv_args = ["--without-pip"]\nvenv_setup = [{json.dumps(venv_setup)}]')
    project = Project(app_repo)
    pool = WorkspacePool(project, size=2)
    pool.fill(project.target_tip())
    ready = pool.ready()
    assert len(ready) == 2
    venvs = {read_setup(meta_dir(project, w.id) / "setup.json").venv for w in ready}
    [venv] = venvs
    assert Path(venv).parent == project.run_dir / "venvs"
    for workspace in ready:  # the setup ran with the venv's python first on PATH
        assert (workspace.path / "greeted.txt").read_text() == "hello from greet 1.0\n"
    installed = next(Path(venv).rglob("greet.py"))
    assert not installed.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert pool.acquire(1, "claw/1-v", project.target_tip()).env["VIRTUAL_ENV"] == venv


def test_a_fill_killed_mid_setup_is_reaped_with_its_setup_processes(app_repo):
    started = app_repo.parent / "setup-started"
    configure(app_repo, setup=f"echo $$ > {started}; sleep 60")
    fill = ("from pathlib import Path; from clawfleet.project import Project; "
            "from clawfleet.workspace import WorkspacePool; "
            f"p = Project(Path({str(app_repo)!r})); WorkspacePool(p, size=1).fill(p.target_tip())")
    filler = subprocess.Popen([sys.executable, "-c", fill], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (started.exists() and started.read_text().strip()):
        assert time.monotonic() < deadline and filler.poll() is None
        time.sleep(0.05)
    setup_pid = int(started.read_text())
    filler.kill()  # SIGKILL: the filler dies, the setup it started lives on in its own group
    filler.wait(timeout=10)
    assert pid_alive(setup_pid)
    project = Project(app_repo)
    [interrupted] = project.store.workspaces(["making"])

    configure(app_repo, setup="true")
    pool = WorkspacePool(project, size=1)
    assert pool.fill(project.target_tip()) == 1
    assert not Path(interrupted["path"]).exists() and project.store.workspace(interrupted["id"]) is None
    deadline = time.monotonic() + 10
    while pid_alive(setup_pid):
        assert time.monotonic() < deadline, "the orphaned setup was not killed"
        time.sleep(0.05)
    assert [w.state for w in pool.ready()] == ["ready"]


def test_an_agent_that_commits_the_copied_env_itself_lands_nothing(app_repo):
    agent = app_repo.parent / "committer.sh"
    agent.write_text("#!/usr/bin/env bash\necho feature > feature.txt\n"
                     "git add -A && git commit -qm 'agent commits everything'\n")
    agent.chmod(0o755)
    configure(app_repo, setup="true", fleet='default_agent = "committer"')
    with open(app_repo / ".claw" / "config.toml", "a") as config:
        config.write(f'\n[agents.committer]\nkind = "command"\ncommand = ["{agent}"]\n')
    assert claw(app_repo, "add", "leaky").returncode == 0
    assert claw(app_repo, "run", timeout=120).returncode == 0
    [task] = json.loads(claw(app_repo, "status", "--all", "--json").stdout)
    assert task["state"] == "failed"
    reason = task["latest_attempt"]["reason"]
    assert reason.startswith("the diff holds what looks like a secret, so it must not land: .env:1")
    assert "fixtures/big.bin (a copy of big.bin" in reason
    assert git.out("log", "main", "--format=%H", "--", ".env", cwd=app_repo) == ""
    assert ".env" in git.out("show", "--name-only", "--format=", task["latest_attempt"]["branch"], cwd=app_repo)


def test_an_included_file_that_gitignore_ignores_lands_the_work_without_it(app_repo):
    """The README's own advice: `.env` in .gitignore and in [workspace] include. git refuses a
    literal pathspec naming an ignored file (exit 1: "The following paths are ignored"), so a
    commit that excluded it that way failed every attempt."""
    (app_repo / ".gitignore").write_text(".deps/\n__pycache__/\n.env\nfixtures/\n")
    git.git("commit", "--quiet", "-m", "ignore the secrets and fixtures", ".gitignore", cwd=app_repo, identity=True)
    seen = app_repo.parent / "seen-env.txt"
    agent = app_repo.parent / "writer.sh"
    agent.write_text(f"#!/usr/bin/env bash\ncp .env {seen}\necho feature > feature.txt\n")
    agent.chmod(0o755)
    configure(app_repo, setup="true", fleet='default_agent = "writer"')
    with open(app_repo / ".claw" / "config.toml", "a") as config:
        config.write(f'\n[agents.writer]\nkind = "command"\ncommand = ["{agent}"]\n')
    assert claw(app_repo, "add", "a feature").returncode == 0
    result = claw(app_repo, "run", timeout=120)
    assert result.returncode == 0, result.stderr
    [task] = json.loads(claw(app_repo, "status", "--all", "--json").stdout)
    assert task["state"] == "merged", task["latest_attempt"]["reason"]
    assert seen.read_text() == "SECRET_TOKEN=swordfish\n"  # the agent had its copy
    assert git.out("show", "main:feature.txt", cwd=app_repo) == "feature"
    assert git.out("ls-tree", "-r", "--name-only", "main", cwd=app_repo).split().count(".env") == 0
