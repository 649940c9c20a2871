"""The AI reviewer as an agent of any kind, in a process of its own.

The reviewers here are `command` agents (bash scripts): they prove what every non-builtin kind
gets — a throwaway checkout of the change, the prompt, a verdict read from its final message —
while the fleet goes on, and a review that survives a killed orchestrator. The real Claude Code
as a reviewer is in test_agents_real.py; the built-in kind in test_review.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from clawfleet import git
from clawfleet.procs import cmdline

from conftest import agent_script, claw
from test_run import configure, status_json


def with_reviewer(repo, workers: dict[str, str], reviewer: str, *, slots: int = 3, timeout: float = 900) -> None:
    configure(repo, {**workers, "reviewer": reviewer}, auto_approve='["low"]', checks=["true"],
              max_attempts=2, slots=slots)
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[review]\n", f"""[review]
auto_max_risk = {{ normal = -1 }}
ai_reviewer = "reviewer"
ai_max_risk = {{ normal = 100 }}
ai_timeout = {timeout}
"""))


def verdict(text: str) -> str:
    """Shell lines that end a command reviewer with `text` as its final message."""
    return f"printf '%s' '{text}' > \"$CLAW_SUMMARY_FILE\"\n"


def test_a_command_reviewer_reads_a_checkout_of_the_change_and_its_edits_are_thrown_away(repo):
    worker = agent_script(repo, "w", """
        if grep -q "reviewer asks" "$CLAW_PROMPT_FILE"; then echo "with a test" > done.txt
        else echo "first try" > done.txt; fi
        """)
    log = repo.parent / "reviewer.log"
    reviewer = agent_script(repo, "r", f"""
        # What it sees: the change checked out, and the prompt with the diff in it.
        echo "pwd=$PWD head=$(git rev-parse --abbrev-ref HEAD) done=$(cat done.txt)" >> {log}
        grep -q "do not edit files" "$CLAW_PROMPT_FILE" && grep -q "+first try\\|+with a test" "$CLAW_PROMPT_FILE" \\
            || {{ echo "prompt without the diff" >> {log}; exit 1; }}
        echo junk > reviewer-was-here.txt
        if grep -q "first try" done.txt; then
            printf 'Thinking it over.\\n{{"verdict": "revise", "comments": ["add a test"]}}' > "$CLAW_SUMMARY_FILE"
        else
            {verdict('{"verdict": "approve", "comments": ["good"]}')}
        fi
        """)
    with_reviewer(repo, {"w": worker}, reviewer)
    claw(repo, "add", "do it")
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert "AI reviewer: revise: add a test" in result.stdout and "AI reviewer: approve: good" in result.stdout
    task = status_json(repo)[0]
    assert task["state"] == "merged" and (repo / "done.txt").read_text() == "with a test\n"
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert [(a["state"], a["ai_review"]) for a in shown["attempts"]] == [("sent_back", "revise"), ("merged", "approve")]

    seen = log.read_text().splitlines()
    assert len(seen) == 2 and all("/review/checkout head=HEAD" in line for line in seen), seen
    assert seen[0].endswith("done=first try") and seen[1].endswith("done=with a test")
    # The reviewer's edit went nowhere: not on main, not on a branch, and its checkout is gone.
    assert not (repo / "reviewer-was-here.txt").exists()
    for attempt in shown["attempts"]:
        assert "reviewer-was-here.txt" not in git.out("ls-tree", "-r", "--name-only", attempt["head_commit"], cwd=repo)
        assert not (repo / ".claw/run/attempts" / str(attempt["id"]) / "review" / "checkout").exists()
    assert not any("/review/checkout" in str(w.path) for w in git.worktrees(repo))


def test_the_fleet_goes_on_while_a_reviewer_works(repo):
    # The reviewer approves only once the other task has landed: if reviewing held up the
    # fleet, that could never happen and the review would fail at its time limit.
    worker = agent_script(repo, "w", 'echo "$CLAW_TASK_ID" > "t$CLAW_TASK_ID.txt"\n')
    reviewer = agent_script(repo, "r", f"""
        for i in $(seq 1 200); do
            git -C {repo} show main:t2.txt >/dev/null 2>&1 && {{ {verdict('{"verdict": "approve"}')} exit 0; }}
            sleep 0.1
        done
        exit 1
        """)
    with_reviewer(repo, {"w": worker}, reviewer, slots=1)
    claw(repo, "add", "reviewed by the AI")                       # normal: the reviewer looks
    claw(repo, "add", "small", "--importance", "low")             # lands by policy
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert [t["state"] for t in status_json(repo)] == ["merged", "merged"]
    log = git.out("log", "--format=%s", "main", cwd=repo).splitlines()
    assert log.index(next(s for s in log if "small" in s)) > log.index(next(s for s in log if "reviewed" in s))


def test_a_review_outlives_a_killed_orchestrator_and_is_collected_by_the_next(repo):
    worker = agent_script(repo, "w", "echo work > work.txt\n")
    runs, release = repo.parent / "reviews.count", repo.parent / "release"
    reviewer = agent_script(repo, "r", f"""
        echo run >> {runs}
        while [ ! -e {release} ]; do sleep 0.1; done
        {verdict('{"verdict": "approve", "comments": ["fine"]}')}
        """)
    with_reviewer(repo, {"w": worker}, reviewer)
    claw(repo, "add", "do it")
    run = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not runs.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert runs.exists(), "the reviewer never started"
    task = status_json(repo)[0]
    assert task["state"] == "review" and "the AI reviewer (reviewer, command) is looking at it" in task["reason"]
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    release.touch()
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert status_json(repo)[0]["state"] == "merged"
    assert runs.read_text() == "run\n"   # reviewed once: the next orchestrator took its verdict


def test_a_reviewer_past_its_time_or_without_a_verdict_leaves_it_to_a_person(repo):
    worker = agent_script(repo, "w", 'echo "$CLAW_TASK_ID" > "t$CLAW_TASK_ID.txt"\n')
    reviewer = agent_script(repo, "r", """
        if grep -q "t1.txt" "$CLAW_PROMPT_FILE"; then sleep 60; fi
        echo "looks fine to me" > "$CLAW_SUMMARY_FILE"
        """)
    with_reviewer(repo, {"w": worker}, reviewer, timeout=2)
    claw(repo, "add", "one")
    claw(repo, "add", "two")
    started = time.time()
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert time.time() - started < 40
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["review", "review"]
    assert tasks[0]["reason"].startswith("AI review failed, a person decides: the AI reviewer 'reviewer' failed: "
                                         "the agent ran out of time"), tasks[0]["reason"]
    assert tasks[1]["reason"].startswith("AI review failed, a person decides: the AI reviewer did not reply "
                                         "with a verdict (its reply began: 'looks fine to me')"), tasks[1]["reason"]
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert shown["attempts"][0]["ai_review"] == "failed"
    # A person decides as usual.
    assert claw(repo, "approve", "1").returncode == 0

    # The person is told when the reviewer leaves a task to them, not when it starts looking.
    from clawfleet.notify import notification_for
    from clawfleet.store import Store

    store = Store(repo / ".claw" / "run" / "claw.db")
    told = [n.summary for n in (notification_for(e, store) for e in store.events()) if n and n.kind == "review"]
    assert len(told) == 2 and all("AI review failed, a person decides" in s for s in told), told


def test_claw_stats_counts_what_the_ai_reviewer_settled(repo):
    worker = agent_script(repo, "w", 'echo "$CLAW_TASK_ID" > "t$CLAW_TASK_ID.txt"\n')
    reviewer = agent_script(repo, "r", f"""
        if grep -q "t1.txt" "$CLAW_PROMPT_FILE"; then {verdict('{"verdict": "approve"}')}
        else {verdict('{"verdict": "reject", "comments": ["no"]}')}
        fi
        """)
    with_reviewer(repo, {"w": worker}, reviewer)
    claw(repo, "add", "one")
    claw(repo, "add", "two")
    assert claw(repo, "run").returncode == 0
    assert json.loads(claw(repo, "stats", "--json").stdout)["review"]["ai"] == {"approve": 1, "reject": 1}
    assert "AI reviewer: 1 settled without you (1 approve, 1 reject)" in claw(repo, "stats").stdout


def test_a_person_deciding_first_stops_the_review_and_its_checkout_goes(repo):
    worker = agent_script(repo, "w", "echo work > work.txt\n")
    started = repo.parent / "review-started"
    reviewer = agent_script(repo, "r", f"touch {started}; sleep 300\n")
    with_reviewer(repo, {"w": worker}, reviewer)
    claw(repo, "add", "do it")
    run = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert started.exists(), "the reviewer never started"
    assert claw(repo, "approve", "1").returncode == 0        # the person is quicker
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    assert status_json(repo)[0]["state"] == "merged"
    attempt = json.loads(claw(repo, "show", "1", "--json").stdout)["attempts"][0]
    assert attempt["ai_review"] == "late"
    review_dir = repo / ".claw/run/attempts" / str(attempt["id"]) / "review"
    assert not (review_dir / "checkout").exists()
    assert not any("/review/checkout" in str(w.path) for w in git.worktrees(repo))
    assert not [p for p in os.listdir("/proc") if p.isdigit() and str(review_dir) in " ".join(cmdline(int(p)))]
