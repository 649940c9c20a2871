"""`claw run`: parallel attempts in worktrees, outcomes, dependencies, timeouts, fix rounds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from clawfleet import git
from clawfleet.procs import pid_alive

from conftest import agent_script, claw, write_config


def configure(repo: Path, agents: dict[str, str], *, checks: list[str] = (), slots: int = 3,
              auto_approve: str = '["low", "normal"]', fix_rounds: int = 1, on_failure: str = "fail",
              timeout: float = 60, max_attempts: int = 1, retry_backoff: float = 0) -> None:
    agent_tables = "".join(f'\n[agents.{name}]\nkind = "command"\ncommand = ["{path}"]\n'
                           for name, path in agents.items())
    write_config(repo, f"""
        [fleet]
        slots = {slots}
        default_agent = "{next(iter(agents))}"
        attempt_timeout = {timeout}
        max_attempts = {max_attempts}
        retry_backoff = {retry_backoff}
        [checks]
        commands = {json.dumps(list(checks))}
        fix_rounds = {fix_rounds}
        on_failure = "{on_failure}"
        [review]
        auto_approve = {auto_approve}
        """ + agent_tables)


def status_json(repo: Path) -> list[dict]:
    result = claw(repo, "status", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tasks_run_in_parallel_worktrees_and_land(repo):
    stamps = repo.parent / "stamps"
    stamps.mkdir()
    agent = agent_script(repo, "writer", f"""
        echo "start $(date +%s.%N)" > {stamps}/$CLAW_TASK_ID
        pwd >> {stamps}/$CLAW_TASK_ID.where
        sleep 1
        echo "task $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"
        echo "end $(date +%s.%N)" >> {stamps}/$CLAW_TASK_ID
        echo "wrote file-$CLAW_TASK_ID.txt" > "$CLAW_SUMMARY_FILE"
        """)
    configure(repo, {"writer": agent}, slots=3)
    for title in ("first", "second", "third"):
        assert claw(repo, "add", title).returncode == 0
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged"] * 3
    # Each attempt ran in its own worktree, not in the person's checkout.
    places = {(stamps / f"{t['id']}.where").read_text().strip() for t in tasks}
    assert len(places) == 3 and str(repo) not in places
    # They overlapped in time: every start came before every end.
    starts = [float((stamps / str(t["id"])).read_text().split()[1]) for t in tasks]
    ends = [float((stamps / str(t["id"])).read_text().split()[3]) for t in tasks]
    assert max(starts) < min(ends)
    # Landed on main, linear, the person's checkout updated; agent branches cleaned up.
    assert sorted(p.name for p in repo.glob("file-*.txt")) == ["file-1.txt", "file-2.txt", "file-3.txt"]
    assert git.out("rev-list", "--merges", "main", cwd=repo) == ""
    assert git.all_branches(repo, "claw/") == []
    assert tasks[0]["latest_attempt"]["summary"] == "wrote file-1.txt"


def test_dependencies_wait_for_landing(repo):
    order = repo.parent / "order.log"
    agent = agent_script(repo, "dep", f"""
        echo "$CLAW_TASK_ID" >> {order}
        echo x > "dep-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"dep": agent}, slots=4)
    assert claw(repo, "add", "base work").stdout.strip() == "1"
    assert claw(repo, "add", "built on it", "--depends", "1", "--priority", "9").stdout.strip() == "2"
    queued = status_json(repo)
    assert queued[1]["waiting"] == "waits for task 1 to land"
    assert claw(repo, "run").returncode == 0
    assert order.read_text().split() == ["1", "2"]
    assert [t["state"] for t in status_json(repo)] == ["merged", "merged"]


def test_no_change_is_its_own_outcome(repo):
    agent = agent_script(repo, "idle", "echo 'looked around, nothing to do'\n")
    configure(repo, {"idle": agent})
    claw(repo, "add", "nothing to do")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert task["latest_attempt"]["state"] == "no_change"
    assert git.all_branches(repo, "claw/") == []


def test_agent_crash_fails_the_task_and_keeps_its_work(repo):
    agent = agent_script(repo, "crasher", "echo partial > partial.txt\necho boom >&2\nexit 3\n")
    configure(repo, {"crasher": agent})
    claw(repo, "add", "will crash")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert task["latest_attempt"]["exit_code"] == 3
    assert "exited with status 3" in task["reason"]
    branch = task["latest_attempt"]["branch"]
    assert git.out("show", f"{branch}:partial.txt", cwd=repo) == "partial"  # nothing lost
    assert "boom" in claw(repo, "log", "1").stdout


def test_timeout_kills_the_whole_process_group(repo):
    pids = repo.parent / "pids"
    agent = agent_script(repo, "hang", f"""
        sleep 300 &
        echo $! > {pids}
        echo $$ >> {pids}
        wait
        """)
    configure(repo, {"hang": agent}, timeout=2)
    claw(repo, "add", "hangs forever")
    started = time.monotonic()
    assert claw(repo, "run").returncode == 0
    assert time.monotonic() - started < 30
    task = status_json(repo)[0]
    assert task["latest_attempt"]["state"] == "timed_out"
    assert task["state"] == "failed"
    for pid in map(int, pids.read_text().split()):
        assert not pid_alive(pid)


def test_timeout_is_retried_when_attempts_remain(repo):
    marker = repo.parent / "tried"
    agent = agent_script(repo, "slow-once", f"""
        if [ ! -e {marker} ]; then touch {marker}; sleep 300; fi
        echo done > done.txt
        """)
    # Room for a loaded machine: the retry must start and end well within its time, and the
    # backoff last longer than one `claw status` poll.
    configure(repo, {"slow-once": agent}, timeout=6, max_attempts=2, retry_backoff=4)
    claw(repo, "add", "slow the first time")
    run = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waits = set()
    while run.poll() is None:
        waits |= {t.get("waiting") for t in status_json(repo)}
        time.sleep(0.2)
    assert run.returncode == 0
    assert any(w and w.startswith("retry 2 starts in") for w in waits), waits
    task = status_json(repo)[0]
    assert task["state"] == "merged"
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert [a["state"] for a in shown["attempts"]] == ["timed_out", "merged"]


def test_failing_check_is_fed_back_for_a_fix_round(repo):
    agent = agent_script(repo, "fixer", """
        if grep -q "The checks failed" "$CLAW_PROMPT_FILE"; then
            echo good > value.txt
        else
            echo bad > value.txt
        fi
        """)
    configure(repo, {"fixer": agent}, checks=["grep -q good value.txt"], fix_rounds=1)
    claw(repo, "add", "write a good value")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "merged"
    assert task["latest_attempt"]["fix_rounds"] == 1
    prompt = Path(repo / ".claw/run/attempts/1/prompt-1.md").read_text()
    assert "grep -q good value.txt" in prompt and "exited 1" in prompt
    assert (repo / "value.txt").read_text() == "good\n"


def test_checks_still_failing_after_fix_rounds(repo):
    agent = agent_script(repo, "stubborn", "echo bad > value.txt\n")
    configure(repo, {"stubborn": agent}, checks=["grep -q good value.txt"], fix_rounds=1)
    claw(repo, "add", "never good")
    claw(repo, "run")
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert task["latest_attempt"]["state"] == "checks_failed"
    assert (repo / "value.txt").exists() is False  # main untouched


def test_a_failed_check_reason_names_its_telling_line_not_a_dangling_colon(repo):
    """The reason's first line (what `claw status` shows) ends in pytest's summary, not in
    "exited 1:"; without such a summary, in the last line the check printed."""
    agent = agent_script(repo, "stubborn", "echo bad > value.txt\n")
    pytest_like = ("printf 'F...\\n=== FAILURES ===\\nassert 1 == 2\\n"
                   "==== 1 failed, 3 passed in 0.05s ====\\n\\n'; exit 1")
    configure(repo, {"stubborn": agent}, checks=[pytest_like], fix_rounds=0)
    claw(repo, "add", "never good")
    claw(repo, "run")
    reason = status_json(repo)[0]["reason"]
    assert reason.splitlines()[0].endswith("exited 1: 1 failed, 3 passed in 0.05s"), reason
    configure(repo, {"stubborn": agent}, checks=["echo first; echo 'value is bad' >&2; exit 2"], fix_rounds=0)
    claw(repo, "add", "never good either")
    claw(repo, "run")
    reason = status_json(repo)[-1]["reason"]
    assert reason.splitlines()[0].endswith("exited 2: value is bad"), reason


def test_checks_failing_can_go_to_review_by_config(repo):
    agent = agent_script(repo, "stubborn", "echo bad > value.txt\n")
    configure(repo, {"stubborn": agent}, checks=["grep -q good value.txt"], fix_rounds=0,
              on_failure="review")
    claw(repo, "add", "never good")
    claw(repo, "run")
    assert status_json(repo)[0]["state"] == "review"


def test_normal_importance_waits_for_review_then_lands(repo):
    agent = agent_script(repo, "w", "echo reviewed > reviewed.txt\n")
    configure(repo, {"w": agent}, auto_approve='["low"]')
    claw(repo, "add", "needs a look", "--importance", "normal")
    claw(repo, "run")
    assert status_json(repo)[0]["state"] == "review"
    review = claw(repo, "review")
    assert "needs a look" in review.stdout and "reviewed.txt" in review.stdout
    assert claw(repo, "approve", "1").returncode == 0
    merged = claw(repo, "merge")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert (repo / "reviewed.txt").read_text() == "reviewed\n"


def test_send_back_with_feedback_starts_a_new_attempt(repo):
    agent = agent_script(repo, "listener", """
        if grep -q "use uppercase" "$CLAW_PROMPT_FILE"; then echo HELLO > hello.txt
        else echo hello > hello.txt; fi
        """)
    configure(repo, {"listener": agent}, auto_approve="[]")
    claw(repo, "add", "greet")
    claw(repo, "run")
    assert claw(repo, "reject", "1", "--feedback", "use uppercase").returncode == 0
    assert status_json(repo)[0]["state"] == "queued"
    claw(repo, "run")
    claw(repo, "approve", "1")
    assert claw(repo, "merge").returncode == 0
    assert (repo / "hello.txt").read_text() == "HELLO\n"


def test_unknown_agent_on_a_task_fails_it_with_the_fix(repo):
    agent = agent_script(repo, "w", "echo x > x.txt\n")
    configure(repo, {"w": agent})
    result = claw(repo, "add", "t", "--agent", "nope")
    assert result.returncode == 1
    assert "unknown agent 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_cancel_stops_a_running_attempt(repo):
    pids = repo.parent / "pids"
    agent = agent_script(repo, "long", f"echo $$ > {pids}\necho partial > partial.txt\nsleep 300\n")
    configure(repo, {"long": agent})
    claw(repo, "add", "long job")
    import subprocess, sys
    runner = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert claw(repo, "cancel", "1").returncode == 0
    assert runner.wait(timeout=30) == 0
    task = status_json(repo)[0]
    assert task["state"] == "cancelled" and task["latest_attempt"]["state"] == "cancelled"
    assert not pid_alive(int(pids.read_text()))
    assert claw(repo, "retry", "1").returncode == 0
    assert status_json(repo)[0]["state"] == "queued"


def test_second_orchestrator_is_refused(repo):
    agent = agent_script(repo, "long", "sleep 5\necho x > x.txt\n")
    configure(repo, {"long": agent})
    claw(repo, "add", "long job")
    import subprocess, sys
    first = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while status_json(repo)[0]["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        second = claw(repo, "run")
        assert second.returncode == 1
        assert "another claw orchestrator" in second.stderr
    finally:
        first.wait(timeout=60)
    assert status_json(repo)[0]["state"] == "merged"


def test_log_follow_prints_the_agent_output_until_the_attempt_ends(repo):
    agent = agent_script(repo, "talker", """
        for i in 1 2 3 4 5; do echo "line $i"; sleep 0.4; done
        echo done > talked.txt
        """)
    configure(repo, {"talker": agent})
    claw(repo, "add", "talk slowly")
    run = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "run"], cwd=repo,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while status_json(repo)[0]["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    follow = claw(repo, "log", "1", "-f")
    assert run.wait(timeout=60) == 0
    assert follow.returncode == 0
    assert [line for line in follow.stdout.splitlines() if line.startswith("line")] == \
        [f"line {i}" for i in range(1, 6)]


def test_log_of_an_earlier_attempt_stats_by_id_and_a_requeued_task_shows_no_old_time(repo):
    counter = repo.parent / "runs"
    agent = agent_script(repo, "counting", f"""
        echo x >> {counter}
        echo "run number $(wc -l < {counter}) of task $CLAW_TASK_ID"
        [ "$CLAW_TASK_ID" = 1 ] && [ "$(wc -l < {counter})" -lt 3 ] && exit 3
        echo "task $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"
        """)
    configure(repo, {"counting": agent}, slots=1)
    claw(repo, "add", "first, runs last", "--priority", "0")
    claw(repo, "add", "second, runs first", "--priority", "9")
    claw(repo, "run")
    assert claw(repo, "retry", "1").returncode == 0
    row = next(line for line in claw(repo, "status").stdout.splitlines() if "first, runs last" in line)
    assert " queued " in row and not re.search(r"\d+s\b", row), row  # not the old attempt's time
    claw(repo, "run")
    assert claw(repo, "log", "1", "--attempt", "1").stdout.startswith("run number 2 of task 1")
    assert claw(repo, "log", "1").stdout.startswith("run number 3 of task 1")
    missing = claw(repo, "log", "1", "--attempt", "5")
    assert missing.returncode == 2 and "task 1 has no attempt 5 (it has 2)" in missing.stderr
    stats = claw(repo, "stats").stdout.splitlines()
    header = next(i for i, line in enumerate(stats) if line.startswith("task (by id)"))
    assert stats[header + 1].startswith("1 first") and stats[header + 2].startswith("2 second"), stats
