"""Review triage: a risk score from the diff and checks, and a policy by importance."""

from __future__ import annotations

import json

from clawfleet.git import FileStat
from clawfleet.risk import score

from conftest import agent_script, claw
from test_run import configure, status_json

SENSITIVE = [".github/**", "**/migrations/**"]


def test_risk_parts_add_up_and_say_why():
    small_with_test = [FileStat("app.py", 10, 2), FileStat("tests/test_app.py", 15, 0)]
    assert score(small_with_test, checks_passed=True, sensitive=SENSITIVE).score == 1 + 3
    risky = score([FileStat("db/migrations/0002.sql", 5, 1)], checks_passed=False, sensitive=SENSITIVE)
    assert risky.score == 25 + 15 + 40
    assert risky.reasons == ["sensitive: db/migrations/0002.sql", "code changed without tests", "checks failed"]
    # A policy file counts as one, not as sensitive too, and is named for the person to approve.
    policy = score([FileStat(".github/workflows/ci.yml", 5, 1)], checks_passed=True, sensitive=SENSITIVE)
    assert (policy.score, policy.policy_files) == (30 + 15, [".github/workflows/ci.yml"])
    assert policy.reasons == ["policy files: .github/workflows/ci.yml", "code changed without tests"]
    assert score([FileStat("docs/a.md", 3, 0)], checks_passed=None, sensitive=SENSITIVE).reasons == ["no checks ran"]
    big = score([FileStat(f"m{i}.py", 300, 250) for i in range(20)], checks_passed=True, sensitive=SENSITIVE)
    assert big.score <= 100 and "mostly deletions" not in " ".join(big.reasons)


def test_policy_lands_low_risk_and_asks_a_person_for_the_rest(repo):
    agent = agent_script(repo, "two-ways", """
        if [ "$CLAW_TASK_ID" = 1 ]; then
            echo "def f(): return 1" > f.py; mkdir -p tests; echo "assert True" > tests/test_f.py
        else
            mkdir -p .github/workflows; echo "on: push" > .github/workflows/ci.yml
        fi
        """)
    configure(repo, {"two-ways": agent}, auto_approve="[]", checks=["true"])
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[review]\n", "[review]\nauto_max_risk = { normal = 30 }\n"))
    claw(repo, "add", "small change with a test")
    claw(repo, "add", "touch CI")
    assert claw(repo, "run").returncode == 0
    tasks = status_json(repo)
    assert tasks[0]["state"] == "merged"
    assert tasks[1]["state"] == "review"
    assert tasks[1]["reason"] == ("a person must approve: it changes policy files: .github/workflows/ci.yml; "
                                  "risk 45 (policy files: .github/workflows/ci.yml; code changed without tests)")
    events = json.loads(claw(repo, "show", "1", "--json").stdout)["events"]
    assert any(e["kind"] == "attempt.ready" and e["data"]["risk"] <= 30 for e in events)


def test_review_orders_by_importance_then_risk_and_records_the_wait(repo):
    agent = agent_script(repo, "sized", """
        case "$CLAW_TASK_ID" in
            1) echo small > small.txt ;;
            2) seq 1 2000 > big.txt ;;
            3) echo crit > crit.txt ;;
        esac
        """)
    configure(repo, {"sized": agent}, auto_approve="[]", checks=["true"])
    claw(repo, "add", "small")
    claw(repo, "add", "big")
    claw(repo, "add", "critical", "--importance", "critical")
    claw(repo, "run")
    order = [t["id"] for t in json.loads(claw(repo, "review", "--json").stdout)]
    assert order == [3, 2, 1]
    assert claw(repo, "approve", "3").returncode == 0
    events = json.loads(claw(repo, "show", "3", "--json").stdout)["events"]
    approved = next(e for e in events if e["kind"] == "attempt.approved")
    assert approved["data"]["waited_s"] > 0
    assert claw(repo, "reject", "1", "--feedback", "smaller, please").returncode == 0

    # `claw stats` shows how long attempts waited for a person, and what waits now.
    review = json.loads(claw(repo, "stats", "--json").stdout)["review"]
    assert review["decided"] == 2 and review["waiting_now"] == 1
    assert 0 < review["wait_s_p50"] <= review["wait_s_max"] and review["oldest_waiting_s"] >= review["wait_s_max"]
    assert "review: 2 decided by a person, waited p50" in claw(repo, "stats").stdout
    assert "1 waiting now, the oldest for" in claw(repo, "stats").stdout


def ai_config(repo, server, agent):
    configure(repo, {"w": agent}, auto_approve="[]", checks=["true"], max_attempts=2)
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[review]\n", """[review]
auto_max_risk = { normal = -1 }
ai_reviewer = "reviewer"
ai_max_risk = { normal = 100 }
""") + f"""
[agents.reviewer]
kind = "builtin"
provider = "openai"
model = "scripted"
base_url = "{server.openai_base_url}"
""")


def test_ai_reviewer_approves_or_sends_back_with_comments(repo):
    from clawfleet.llm.scripted import Script, ScriptedServer

    agent = agent_script(repo, "w", """
        if grep -q "reviewer asks" "$CLAW_PROMPT_FILE"; then echo "with a test" > done.txt
        else echo "first try" > done.txt; fi
        """)
    script = Script.from_rules([
        {"match": "first try", "steps": [{"text": '{"verdict": "revise", "comments": ["add a test"]}'}]},
        {"match": "with a test", "steps": [{"text": '{"verdict": "approve", "comments": ["good"]}'}]},
    ])
    with ScriptedServer(script) as server:
        ai_config(repo, server, agent)
        claw(repo, "add", "do it")
        result = claw(repo, "run")
    assert result.returncode == 0, result.stderr
    assert "AI reviewer: revise: add a test" in result.stdout
    task = status_json(repo)[0]
    assert task["state"] == "merged"
    assert (repo / "done.txt").read_text() == "with a test\n"
    shown = json.loads(claw(repo, "show", "1", "--json").stdout)
    assert [a["state"] for a in shown["attempts"]] == ["sent_back", "merged"]
    assert "- add a test" in (repo / ".claw/run/attempts" / str(shown["attempts"][1]["id"]) / "prompt-0.md").read_text()


def test_ai_reviewer_rejection_or_failure_leaves_it_to_a_person(repo):
    from clawfleet.llm.scripted import Script, ScriptedServer

    agent = agent_script(repo, "w", 'echo "$CLAW_TASK_ID" > "t$CLAW_TASK_ID.txt"\n')
    script = Script.from_rules([
        {"match": "t1.txt", "steps": [{"text": '{"verdict": "reject", "comments": ["wrong file"]}'}]},
        {"match": "t2.txt", "steps": [{"text": "no idea"}]},
    ])
    with ScriptedServer(script) as server:
        ai_config(repo, server, agent)
        claw(repo, "add", "one")
        claw(repo, "add", "two")
        assert claw(repo, "run").returncode == 0
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["review", "review"]
    assert tasks[0]["reason"] == "AI reviewer: reject: wrong file"
    assert tasks[1]["reason"].startswith("AI review failed, a person decides: the AI reviewer did not reply")

    # The reviewer's comments are shown to the person, and can go back to the agent as they are.
    listed = {t["id"]: t for t in json.loads(claw(repo, "review", "--json").stdout)}
    assert (listed[1]["ai_review"], listed[1]["ai_comments"]) == ("reject", ["wrong file"])
    assert (listed[2]["ai_review"], listed[2]["ai_comments"]) == ("failed", [])
    assert "the AI reviewer says:\n  - wrong file" in claw(repo, "review").stdout
    refused = claw(repo, "reject", "2", "--ai-feedback")
    assert refused.returncode == 2 and "the AI reviewer left no comments on task 2's attempt" in refused.stderr
    assert claw(repo, "reject", "1", "--ai-feedback").returncode == 0
    task = status_json(repo)[0]
    assert task["state"] == "queued" and task["feedback"] == "The reviewer asks for changes:\n- wrong file"
