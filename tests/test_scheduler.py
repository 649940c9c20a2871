"""Scheduling: overlapping footprints never run together; dependencies, priorities, agent slots."""

from __future__ import annotations

import subprocess
import sys
import time

from clawfleet.footprint import literal_prefix, matches, overlap

from conftest import agent_script, claw, write_config
from test_run import status_json

FILES = ["src/api/a.py", "src/api/v2/b.py", "src/core.py", "docs/x.md", "README.md"]


def test_glob_matching():
    assert matches("src/**", "src/api/v2/b.py")
    assert matches("src/*/a.py", "src/api/a.py") and not matches("src/*.py", "src/api/a.py")
    assert matches("src/api", "src/api/a.py") and not matches("src/ap", "src/api/a.py")
    assert matches("**/*.md", "README.md") and matches("**/*.md", "docs/x.md")
    assert matches("src/[ac]ore.py", "src/core.py") and not matches("src/[!c]ore.py", "src/core.py")
    assert literal_prefix("src/api/*.py") == "src/api/" and literal_prefix("**/*.md") == ""


def test_overlap_by_files_and_by_prefix_for_new_files():
    assert overlap(["src/api/**"], ["src/api/a.py"], FILES) == ["src/api/a.py"]
    assert overlap(["src/**"], ["docs/**"], FILES) == []
    assert overlap(["src/new/**"], ["src/**"], FILES) == ["src/new/**"]   # will create files there
    assert overlap(["src/new/x.py"], ["src/new/y.py"], FILES) == []
    assert overlap([], ["src/**"], FILES) == []                           # unknown never blocks


def _timeline(repo, agents_body: str, tasks: list[list[str]], extra_config: str = "", run_args=(),
              slots: int = 4):
    stamps = repo.parent / "stamps"
    stamps.mkdir(exist_ok=True)
    agent = agent_script(repo, "timed", f"""
        echo "$(date +%s.%N)" > {stamps}/$CLAW_TASK_ID.start
        {agents_body}
        echo "$(date +%s.%N)" > {stamps}/$CLAW_TASK_ID.end
        """)
    write_config(repo, f"""
        [fleet]
        slots = {slots}
        default_agent = "timed"
        {extra_config}
        [review]
        auto_approve = ["normal"]
        [agents.timed]
        kind = "command"
        command = ["{agent}"]
        """)
    for args in tasks:
        assert claw(repo, "add", *args).returncode == 0
    runner = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run", *run_args], cwd=repo,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snapshots = []
    while runner.poll() is None:
        snapshots.append(status_json(repo))
        time.sleep(0.3)
    assert runner.returncode == 0, runner.stderr.read()

    def span(task_id: int) -> tuple[float, float]:
        return (float((stamps / f"{task_id}.start").read_text()), float((stamps / f"{task_id}.end").read_text()))
    return span, snapshots


def overlapped(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_overlapping_footprints_never_run_together(repo):
    body = 'mkdir -p src docs && echo "$CLAW_TASK_ID" > "src/t$CLAW_TASK_ID.py" && sleep 1.5'
    span, snapshots = _timeline(repo, body, [
        ["wide", "--footprint", "src/**"],
        ["narrow", "--footprint", "src/t2.py"],
        ["docs", "--footprint", "docs/**"],
    ])
    assert not overlapped(span(1), span(2))
    assert overlapped(span(1), span(3))
    reasons = [t.get("waiting") for snap in snapshots for t in snap if t["id"] == 2]
    assert "footprint overlaps running task 1 (src/t2.py)" in reasons
    assert [t["state"] for t in status_json(repo)] == ["merged"] * 3


def test_ignore_footprints_runs_them_together(repo):
    body = 'echo "$CLAW_TASK_ID" > "f$CLAW_TASK_ID.txt" && sleep 1.5'
    span, _ = _timeline(repo, body, [["a", "--footprint", "src/**"], ["b", "--footprint", "src/x.py"]],
                        run_args=["--ignore-footprints"])
    assert overlapped(span(1), span(2))


def test_agent_slot_limit(repo):
    body = 'echo "$CLAW_TASK_ID" > "f$CLAW_TASK_ID.txt" && sleep 1'
    span, snapshots = _timeline(repo, body, [["a"], ["b"]], extra_config="agent_slots = { timed = 1 }")
    assert not overlapped(span(1), span(2))
    reasons = {t.get("waiting") for snap in snapshots for t in snap if t["state"] == "queued"}
    assert "agent 'timed' has all its 1 slot(s) busy" in reasons


def test_priority_picks_the_most_urgent_first(repo):
    body = 'echo "$CLAW_TASK_ID" > "f$CLAW_TASK_ID.txt" && sleep 0.3'
    span, _ = _timeline(repo, body, [["low"], ["urgent", "--priority", "5"], ["middle", "--priority", "2"]],
                        slots=1)
    assert span(2)[1] <= span(3)[0] and span(3)[1] <= span(1)[0]
