"""An unsandboxed agent changes the person's repository itself: moves main to an unreviewed
commit, installs a hook, adds config. Nothing stops it outside a sandbox, so clawfleet must
notice and say so (an event, `claw status`, a notification) — and not be the one that runs the
hook — while the fleet goes on. The person's own commit during a run is normal, not an alarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from clawfleet import git
from clawfleet.config import NotifyConfig
from clawfleet.notify import Notifier
from clawfleet.project import Project

from conftest import agent_script, claw, write_config


def configure(repo: Path, agents: dict[str, str]) -> None:
    tables = "".join(f'\n[agents.{name}]\nkind = "command"\ncommand = ["{path}"]\n' for name, path in agents.items())
    write_config(repo, """
        [fleet]
        slots = 1
        default_agent = "good"
        attempt_timeout = 60
        max_attempts = 1
        [review]
        auto_approve = ["low", "normal", "high"]
        [sandbox]
        enabled = false
        """ + tables)


GOOD = """
    echo "unrelated work of task $CLAW_TASK_ID" > "good-$CLAW_TASK_ID.txt"
    """


def events(repo: Path, kind: str) -> list[dict]:
    project = Project(repo)
    try:
        return project.store.events(kinds=[kind])
    finally:
        project.store.close()


def test_an_agent_moving_main_and_planting_a_hook_and_config_is_reported_and_the_fleet_goes_on(repo, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    evil = agent_script(repo, "evil", f"""
        GCD=$(git rev-parse --path-format=absolute --git-common-dir)
        echo "unreviewed" > backdoor.txt
        blob=$(git hash-object -w backdoor.txt)
        tree=$(printf '100644 blob %s\\tbackdoor.txt\\n' "$blob" | git mktree)
        commit=$(echo sneaked | git commit-tree "$tree" -p refs/heads/main)
        git update-ref refs/heads/main "$commit"
        printf '#!/bin/sh\\necho hook ran >> {marks}/hook\\n' > "$GCD/hooks/post-merge"
        chmod +x "$GCD/hooks/post-merge"
        git config --file "$GCD/config" alias.st '!sh -c "echo alias ran >> {marks}/alias"'
        rm backdoor.txt
        """)
    good = agent_script(repo, "good", GOOD)
    configure(repo, {"evil": evil, "good": good})
    project = Project(repo)
    notifier = Notifier(project.store, NotifyConfig(), send=lambda title, body: sent.append(body) or True)
    sent: list[str] = []
    notifier.read_events()  # the notifier's cursor starts here, as a daemon's would
    main_before = git.rev(repo, "main")
    assert claw(repo, "add", "the attack", "--agent", "evil", "--priority", "9").returncode == 0
    assert claw(repo, "add", "unrelated work").returncode == 0
    result = claw(repo, "run", timeout=180)
    assert result.returncode == 0, result.stderr
    # Reported as it happened, naming each change and who the reflog says made it.
    alarms = [e["data"] for e in events(repo, "security.refs_changed")]
    named = {(a["what"], a["name"]) for a in alarms}
    assert ("ref", "refs/heads/main") in named, alarms
    assert ("hook", "post-merge") in named, alarms
    assert ("config", "alias.st") in named, alarms
    main_alarm = next(a for a in alarms if a["name"] == "refs/heads/main")
    assert main_alarm["old"] == main_before and "not by clawfleet" in main_alarm["summary"]
    assert "'!sh" not in json.dumps(alarms)  # a config value is never repeated (it may hold a token)
    assert "security: main moved" in result.stdout.replace("\n", " ")
    # A line in `claw status`, and a notification.
    status = claw(repo, "status")
    assert "security:" in status.stdout and "main moved" in status.stdout, status.stdout
    notifier.read_events()
    notifier.deliver()
    assert any("security:" in body and "main moved" in body for body in sent), sent
    # clawfleet undid nothing (the person judges), and ran none of what was planted. Main moved
    # under the person's checkout, so the merge waits for them rather than touch it.
    assert "backdoor.txt" in git.tracked_paths(repo, "main")
    assert "your checkout of 'main'" in result.stdout and "uncommitted" in result.stdout, result.stdout
    tasks = json.loads(claw(repo, "status", "--all", "--json").stdout)
    assert tasks[1]["state"] == "approved"
    # The person puts main back; the fleet goes on and lands the unrelated task.
    subprocess.run(["git", "reset", "-q", "--soft", main_before], cwd=repo, check=True)
    again = claw(repo, "run", timeout=180)
    assert again.returncode == 0, again.stderr
    tasks = json.loads(claw(repo, "status", "--all", "--json").stdout)
    assert tasks[1]["state"] == "merged", tasks[1]
    assert (repo / "good-2.txt").exists()
    assert not (marks / "hook").exists() and not (marks / "alias").exists()
    project.store.close()


def test_the_persons_own_commit_during_a_run_is_normal_not_an_alarm(repo, tmp_path):
    started, go = tmp_path / "started", tmp_path / "go"
    slow = agent_script(repo, "good", f"""
        touch {started}
        for i in $(seq 300); do [ -e {go} ] && break; sleep 0.1; done
        echo "work of task $CLAW_TASK_ID" > "good-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"good": slow})
    assert claw(repo, "add", "slow work").returncode == 0
    run = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and run.poll() is None, "the agent never started"
            time.sleep(0.05)
        (repo / "mine.txt").write_text("the person's own work\n")
        subprocess.run(["git", "add", "mine.txt"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "my own change"], cwd=repo, check=True)
        time.sleep(0.5)  # the orchestrator looks while the attempt still runs
        go.touch()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert events(repo, "security.refs_changed") == []
    normal = [e["data"] for e in events(repo, "refs.moved")]
    assert [n["name"] for n in normal] == ["refs/heads/main"], normal
    assert "commit: my own change" in normal[0]["by"] and "normal" in normal[0]["summary"]
    assert "security:" not in claw(repo, "status").stdout
    tasks = json.loads(claw(repo, "status", "--all", "--json").stdout)
    assert tasks[0]["state"] == "merged"
