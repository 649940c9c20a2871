"""Best-of-N: several attempts of one task side by side, the best kept by checks, then risk."""

from __future__ import annotations

import json

from clawfleet import git

from conftest import agent_script, claw
from test_run import configure, status_json

CHECK = "test -f ok.txt && ! grep -q broken ok.txt"


def three_agents(repo):
    # Each waits for the others to have started, so the test fails unless they run side by side.
    wait = """
        touch "$CLAW_WORKSPACE/../../started-$CLAW_ATTEMPT_ID"
        for _ in $(seq 100); do [ "$(ls "$CLAW_WORKSPACE/../../" | grep -c '^started-')" -ge 3 ] && break; sleep 0.05; done
        """
    return {
        "breaks": agent_script(repo, "breaks", wait + "echo broken > ok.txt\n"),
        "sprawls": agent_script(repo, "sprawls", wait + "echo fine > ok.txt; seq 1 3000 > big.txt\n"),
        "neat": agent_script(repo, "neat", wait + "echo fine > ok.txt\n"),
    }


def test_best_of_three_keeps_the_green_low_risk_attempt_and_supersedes_the_others(repo):
    configure(repo, three_agents(repo), checks=[CHECK], auto_approve="[]", fix_rounds=0)
    # The best comes first: what stands for the task is the kept attempt, not the last one.
    added = claw(repo, "add", "Make ok.txt", "--agent", "neat", "--agent", "breaks", "--agent", "sprawls")
    assert added.returncode == 0, added.stderr
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    task = status_json(repo)[0]
    assert task["state"] == "review" and task["best_of"] == 3
    assert task["latest_attempt"]["agent"] == "neat" and task["latest_attempt"]["state"] == "ready"
    detail = json.loads(claw(repo, "show", "1", "--json").stdout)
    by_agent = {a["agent"]: a for a in detail["attempts"]}
    assert {a: by_agent[a]["state"] for a in by_agent} == {"breaks": "superseded", "sprawls": "superseded",
                                                           "neat": "ready"}
    # They ran side by side, from one base; the losers' work stays on their branches.
    assert len({a["started_at"] for a in detail["attempts"]}) == 1
    assert len({a["base_commit"] for a in detail["attempts"]}) == 1
    assert git.out("show", f"{by_agent['sprawls']['branch']}:ok.txt", cwd=repo) == "fine"
    assert "attempt 1 of the same batch was better (ready vs ready)" in by_agent["sprawls"]["reason"]
    assert "(ready vs checks_failed)" in by_agent["breaks"]["reason"]
    kept = next(e for e in detail["events"] if e["kind"] == "attempt.kept")
    assert [r["agent"] for r in kept["data"]["best_of"]] == ["neat", "sprawls", "breaks"]
    assert "best of 3: keeps attempt 1 (neat)" in result.stdout
    # Only the kept one goes on: approving it lands its change alone.
    assert claw(repo, "approve", "1").returncode == 0
    assert claw(repo, "merge").returncode == 0
    assert status_json(repo)[0]["state"] == "merged"
    assert (repo / "ok.txt").read_text() == "fine\n" and not (repo / "big.txt").exists()


def test_attempts_n_with_one_agent_and_all_failing(repo):
    agent = agent_script(repo, "fails", "echo broken > ok.txt\n")
    configure(repo, {"fails": agent}, checks=[CHECK], fix_rounds=0, slots=2)
    claw(repo, "add", "Make ok.txt", "--attempts", "2")
    assert claw(repo, "run").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "failed" and task["reason"].startswith("checks failed")
    attempts = json.loads(claw(repo, "show", "1", "--json").stdout)["attempts"]
    assert sorted(a["state"] for a in attempts) == ["checks_failed", "superseded"]
    for attempt in attempts:   # nothing is lost
        assert git.out("show", f"{attempt['branch']}:ok.txt", cwd=repo) == "broken"


def test_best_of_waits_for_enough_free_slots_and_refuses_more_than_the_fleet_has(repo):
    slow = agent_script(repo, "slow", "sleep 1; echo x > slow.txt\n")
    quick = agent_script(repo, "quick", "echo y > quick-$CLAW_ATTEMPT_ID.txt\n")
    configure(repo, {"slow": slow, "quick": quick}, slots=2)
    too_many = claw(repo, "add", "Too many", "--attempts", "3")
    assert too_many.returncode == 2
    assert "--attempts 3 needs 3 slots at once; the fleet has 2" in too_many.stderr
    assert "raise `slots` under [fleet]" in too_many.stderr
    claw(repo, "add", "Slow one", "--agent", "slow")
    claw(repo, "add", "Pair", "--agent", "quick", "--attempts", "2")
    events = []
    result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    for task in status_json(repo):
        assert task["state"] == "merged", task
        events += json.loads(claw(repo, "show", str(task["id"]), "--json").stdout)["attempts"]
    slow_attempt = next(a for a in events if a["agent"] == "slow")
    pair = [a for a in events if a["agent"] == "quick"]
    assert len(pair) == 2
    # The pair needed both slots: it started only after the slow one had finished.
    assert min(a["started_at"] for a in pair) >= slow_attempt["finished_at"]
