"""Conflict radar: collisions are known while the attempts still run, and no worktree is touched."""

from __future__ import annotations

import json
import subprocess
import sys

from clawfleet import git

from conftest import agent_script, claw, write_config
from test_recovery import wait_for
from test_run import status_json


def start_run(repo, body: str, titles: list[str], interval: float = 0.3):
    marks = repo.parent / "marks"
    marks.mkdir(exist_ok=True)
    agent = agent_script(repo, "slow-editor", f"""
        {body}
        touch {marks}/$CLAW_TASK_ID.edited
        while [ ! -e {marks}/go ]; do sleep 0.1; done
        """)
    write_config(repo, f"""
        [fleet]
        slots = 3
        default_agent = "slow-editor"
        radar_interval = {interval}
        [review]
        auto_approve = []
        [agents.slow-editor]
        kind = "command"
        command = ["{agent}"]
        """)
    for title in titles:
        claw(repo, "add", title)
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: all((marks / f"{i}.edited").exists() for i in range(1, len(titles) + 1)))
    return proc, marks


def test_conflict_between_running_attempts_is_reported_before_either_finishes(repo):
    proc, marks = start_run(repo, 'echo "edit by $CLAW_TASK_ID" > app.txt; echo new > "only-$CLAW_TASK_ID.txt"',
                            ["edit app one", "edit app two"])
    try:
        report = json.loads(claw(repo, "conflicts", "--json").stdout)
        assert all(t["state"] == "running" for t in status_json(repo))
        pairs = [c for c in report["collisions"] if c["other_task"]]
        assert len(pairs) == 1 and pairs[0]["files"] == ["app.txt"]
        assert {pairs[0]["task"], pairs[0]["other_task"]} == {1, 2}
        # The running worktrees were not touched: nothing staged, the agents' edits still unstaged.
        for task in status_json(repo):
            worktree = task["latest_attempt"]["worktree"]
            assert git.git("diff", "--cached", "--quiet", cwd=worktree, check=False).returncode == 0
            assert "app.txt" in git.out("status", "--porcelain", cwd=worktree)
        # The orchestrator's own radar saw it too, and says so in `claw status`.
        wait_for(lambda: "conflict ahead" in claw(repo, "status").stdout, timeout=20)
        # So does the board `claw ui` shows.
        from clawfleet.board import snapshot
        from clawfleet.project import Project
        assert any("will conflict with task" in line and "app.txt" in line
                   for line in snapshot(Project(repo)).conflicts)
    finally:
        (marks / "go").touch()
        output, _ = proc.communicate(timeout=60)
    assert "radar: task 1 will conflict with task 2 in app.txt" in output
    events = [e for e in json.loads(claw(repo, "show", "1", "--json").stdout)["events"]]
    kinds = [e["kind"] for e in events]
    assert kinds.index("radar.conflict") < kinds.index("attempt.ready")


def test_disjoint_attempts_are_not_reported(repo):
    proc, marks = start_run(repo, 'echo "$CLAW_TASK_ID" > "own-$CLAW_TASK_ID.txt"', ["one", "two"])
    try:
        report = json.loads(claw(repo, "conflicts", "--json").stdout)
        assert report["collisions"] == []
        assert sorted(report["touched"].values()) == [["own-1.txt"], ["own-2.txt"]]
    finally:
        (marks / "go").touch()
        proc.communicate(timeout=60)


def test_conflict_with_the_target_that_moved(repo):
    proc, marks = start_run(repo, 'echo "agent edit" > app.txt', ["edit app"])
    try:
        (repo / "app.txt").write_text("the person's edit\n")
        git.git("commit", "-qam", "person edits app.txt", cwd=repo)
        report = json.loads(claw(repo, "conflicts", "--json").stdout)
        assert [(c["task"], c["other_task"], c["files"]) for c in report["collisions"]] == [(1, None, ["app.txt"])]
        assert "will conflict with the target branch 'main' in app.txt" in claw(repo, "conflicts").stdout
    finally:
        (marks / "go").touch()
        proc.communicate(timeout=60)
