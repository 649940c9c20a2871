"""The merge step: conflicts and red checks never reach the target; the person's work is sacred."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from clawfleet import git

from conftest import agent_script, claw
from test_run import configure, status_json


def run_and_approve_all(repo, titles):
    for title in titles:
        assert claw(repo, "add", title).returncode == 0
    assert claw(repo, "run").returncode == 0
    for task in status_json(repo):
        assert task["state"] == "review", task
        assert claw(repo, "approve", str(task["id"])).returncode == 0


def test_conflict_bounces_and_leaves_the_target_untouched(repo):
    agent = agent_script(repo, "editor", 'echo "version $CLAW_TASK_ID" > app.txt\n')
    configure(repo, {"editor": agent}, auto_approve="[]")
    run_and_approve_all(repo, ["edit one", "edit two"])
    result = claw(repo, "merge")
    assert result.returncode == 1
    assert "landed" in result.stdout and "bounced" in result.stdout and "app.txt" in result.stdout
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged", "failed", "queued"]
    assert "conflicts with the target branch in: app.txt; task 3 queued to resolve it" in tasks[1]["reason"]
    assert (repo / "app.txt").read_text() == "version 1\n"
    # The bounced attempt's work is kept on its branch for a retry, and the resolve task says where.
    branch = tasks[1]["latest_attempt"]["branch"]
    assert git.out("show", f"{branch}:app.txt", cwd=repo) == "version 2"
    assert tasks[2]["title"] == "Resolve conflict: edit two"
    assert branch in tasks[2]["body"] and "- `app.txt`" in tasks[2]["body"]
    assert tasks[2]["footprint"] == ["app.txt"]


def test_a_conflict_spawns_a_resolve_task_that_lands(repo):
    agent = agent_script(repo, "editor", """
        if grep -q "Resolve conflict" "$CLAW_PROMPT_FILE"; then
            printf 'version 1\nversion 2\n' > app.txt
        else
            echo "version $CLAW_TASK_ID" > app.txt
        fi
        """)
    configure(repo, {"editor": agent}, auto_approve='["normal"]')
    claw(repo, "add", "edit one")
    claw(repo, "add", "edit two")
    assert claw(repo, "run", "--ignore-footprints").returncode == 0
    tasks = status_json(repo)
    assert sorted(t["state"] for t in tasks) == ["merged", "merged", "resolved"]
    assert (repo / "app.txt").read_text() == "version 1\nversion 2\n"
    assert git.out("rev-list", "--merges", "main", cwd=repo) == ""


def test_red_check_after_rebase_bounces_with_its_output(repo):
    agent = agent_script(repo, "adder", 'echo x > "added-$CLAW_TASK_ID.txt"\n')
    # Each attempt alone has 2 .txt files; both together have 3 and fail the check.
    configure(repo, {"adder": agent}, auto_approve="[]",
              checks=['n=$(ls *.txt | wc -l); echo "txt files: $n"; test "$n" -le 2'])
    run_and_approve_all(repo, ["add one", "add two"])
    before = git.branch_tip(repo, "main")
    result = claw(repo, "merge")
    assert result.returncode == 1
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged", "failed"]
    assert "checks failed after rebase" in tasks[1]["reason"] and "txt files: 3" in tasks[1]["reason"]
    assert git.commits_between(repo, before, "main") == [git.branch_tip(repo, "main")]
    assert not (repo / "added-2.txt").exists()


def test_dirty_checkout_makes_merge_wait_and_keeps_the_persons_change(repo):
    agent = agent_script(repo, "w", "echo feature > feature.txt\n")
    configure(repo, {"w": agent}, auto_approve="[]")
    run_and_approve_all(repo, ["a feature"])
    (repo / "app.txt").write_text("my unsaved work\n")
    before = git.branch_tip(repo, "main")
    result = claw(repo, "merge")
    assert result.returncode == 1
    assert "uncommitted changes" in result.stdout and "merge waits" in result.stdout
    assert (repo / "app.txt").read_text() == "my unsaved work\n"
    assert git.branch_tip(repo, "main") == before
    assert status_json(repo)[0]["state"] == "approved"
    # Once the person commits their work, the merge goes through on top of it.
    git.git("commit", "-qam", "my work", cwd=repo)
    assert claw(repo, "merge").returncode == 0
    assert (repo / "feature.txt").exists() and (repo / "app.txt").read_text() == "my unsaved work\n"
    assert git.out("rev-list", "--merges", "main", cwd=repo) == ""


def test_target_not_checked_out_moves_by_compare_and_swap(repo):
    agent = agent_script(repo, "w", "echo feature > feature.txt\n")
    configure(repo, {"w": agent}, auto_approve="[]")
    git.git("switch", "-q", "-c", "elsewhere", cwd=repo)
    (repo / "scratch.txt").write_text("the person's untracked file\n")
    run_and_approve_all(repo, ["a feature"])
    assert claw(repo, "merge").returncode == 0
    assert git.current_branch(repo) == "elsewhere"
    assert not (repo / "feature.txt").exists()  # their checkout is not touched
    assert git.out("show", "main:feature.txt", cwd=repo) == "feature"
    assert (repo / "scratch.txt").read_text() == "the person's untracked file\n"


def test_target_branch_missing_is_a_clear_error(repo):
    agent = agent_script(repo, "w", "echo x > x.txt\n")
    configure(repo, {"w": agent})
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[fleet]\n", '[fleet]\ntarget = "release"\n'))
    claw(repo, "add", "t")
    result = claw(repo, "run")
    assert result.returncode == 1
    assert "target branch 'release' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert status_json(repo)[0]["state"] == "queued"  # nothing lost


def _interact(repo, answers: list[str], timeout: float = 60) -> str:
    """Run `claw review` on a real pseudo-terminal and answer its prompts."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "review"], cwd=repo,
                            stdin=follower, stdout=follower, stderr=follower,
                            env={**os.environ, "COLUMNS": "120", "TERM": "dumb"})
    os.close(follower)
    output, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip().endswith(b":"):  # a prompt waits for its answer
                os.write(leader, (pending.pop(0) + "\n").encode())
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    return output.decode(errors="replace")


def test_interactive_review_approves_and_sends_back(repo):
    agent = agent_script(repo, "w", 'echo "from $CLAW_TASK_ID" > "r-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"w": agent}, auto_approve="[]")
    claw(repo, "add", "first change", "--importance", "low")
    claw(repo, "add", "urgent change", "--importance", "critical")
    claw(repo, "run")
    output = _interact(repo, ["a", "s", "please add a test"])
    # Most important first: the critical task was shown (and approved) before the low one.
    assert output.index("urgent change") < output.index("first change")
    assert "r-2.txt" in output  # the diff was shown
    tasks = {t["id"]: t for t in status_json(repo)}
    assert tasks[2]["state"] == "approved"
    assert tasks[1]["state"] == "queued" and tasks[1]["feedback"] == "please add a test"


def test_batches_of_twenty_land_eighteen_and_bisect_out_the_two_that_break_main(repo):
    agent = agent_script(repo, "many", """
        case "$CLAW_TASK_ID" in
            7|15) echo "BROKEN" > "change-$CLAW_TASK_ID.txt" ;;
            *) echo "fine" > "change-$CLAW_TASK_ID.txt" ;;
        esac
        """)
    configure(repo, {"many": agent}, slots=4, auto_approve="[]", fix_rounds=0, on_failure="review",
              checks=["! grep -l BROKEN change-*.txt"])
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[review]\n", "[merge]\nbatch_size = 8\n[review]\n"))
    for number in range(1, 21):
        claw(repo, "add", f"change {number}")
    assert claw(repo, "run").returncode == 0
    for task in status_json(repo):
        assert claw(repo, "approve", str(task["id"])).returncode == 0, (task["state"], task["reason"])
    before = git.branch_tip(repo, "main")
    result = claw(repo, "merge")
    assert result.returncode == 1
    tasks = {t["id"]: t for t in status_json(repo)}
    assert sorted(i for i, t in tasks.items() if t["state"] == "merged") == [i for i in range(1, 21) if i not in (7, 15)]
    for culprit in (7, 15):
        assert tasks[culprit]["state"] == "failed"
        assert "checks failed after rebase" in tasks[culprit]["reason"]
        assert f"change-{culprit}.txt" in tasks[culprit]["reason"]
    # Main is green and linear, and every landed change is there.
    assert subprocess.run(["bash", "-c", "! grep -l BROKEN change-*.txt"], cwd=repo).returncode == 0
    assert git.out("rev-list", "--merges", "main", cwd=repo) == ""
    assert len(git.commits_between(repo, before, "main")) == 18
    # Fewer check runs than one per attempt: batches of 8 with bisection.
    merge_logs = list((repo / ".claw/run/attempts").glob("*/checks/merge-batch*"))
    assert len(merge_logs) < 18


def test_claw_run_waits_on_a_dirty_checkout_and_says_so_once(repo):
    agent = agent_script(repo, "w", "echo feature > feature.txt\n")
    configure(repo, {"w": agent})
    (repo / "app.txt").write_text("my unsaved work\n")
    claw(repo, "add", "a feature")
    result = claw(repo, "run")
    assert result.returncode == 0
    assert result.stdout.count("merge waits") == 1
    assert (repo / "app.txt").read_text() == "my unsaved work\n"
    assert status_json(repo)[0]["state"] == "approved"
