"""Nothing waits silently: a bounced task closes when its resolve task lands, dependents of a task
that gave up are blocked (and say why), and approved work that is not landing says why on its line."""

from __future__ import annotations

import json

from conftest import agent_script, claw
from receiver import Receiver
from test_run import configure, status_json

from clawfleet import git
from clawfleet.config import NotifyConfig
from clawfleet.models import TaskState
from clawfleet.notify import Notifier
from clawfleet.project import Project


def by_id(repo) -> dict[int, dict]:
    return {t["id"]: t for t in status_json(repo)}


def test_a_bounced_task_closes_as_resolved_when_its_resolve_task_lands(repo):
    agent = agent_script(repo, "editor", """
        if grep -q "Resolve conflict" "$CLAW_PROMPT_FILE"; then
            printf 'version 1\\nversion 2\\n' > app.txt
        else
            echo "version $CLAW_TASK_ID" > app.txt
        fi
        """)
    configure(repo, {"editor": agent}, auto_approve='["normal"]')
    claw(repo, "add", "edit one")
    claw(repo, "add", "edit two")
    assert claw(repo, "run", "--ignore-footprints").returncode == 0
    tasks = by_id(repo)
    assert sorted(t["state"] for t in tasks.values()) == ["merged", "merged", "resolved"]
    [bounced] = [t for t in tasks.values() if t["state"] == "resolved"]   # whichever landed second
    n = bounced["id"]
    assert bounced["resolved_by"] == 3 and tasks[3]["resolves"] == n and tasks[3]["state"] == "merged"
    assert bounced["reason"] == "resolved by task 3"
    assert "resolved by task 3" in claw(repo, "show", str(n)).stdout
    assert f"resolves task {n}" in claw(repo, "show", "3").stdout
    # Closed: no longer in the open list; the resolve task's line names what it resolved.
    assert "resolved" not in claw(repo, "status").stdout
    assert f"resolves task {n}" in claw(repo, "status", "--all").stdout


def test_dependents_of_a_cancelled_task_are_blocked_told_once_and_retry_unblocks_them(repo):
    agent = agent_script(repo, "w", 'echo "task $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"w": agent})
    claw(repo, "add", "the base")
    claw(repo, "add", "needs the base", "--depends", "1")
    claw(repo, "add", "needs the second", "--depends", "2")
    store = Project(repo).store
    with Receiver() as receiver:
        notifier = Notifier(store, NotifyConfig(urls=[receiver.json_url]))
        notifier.pump()
        assert claw(repo, "cancel", "1").returncode == 0
        tasks = by_id(repo)
        assert [tasks[2]["state"], tasks[3]["state"]] == ["blocked", "blocked"]
        assert tasks[2]["reason"] == tasks[2]["waiting"] == "task 1 was cancelled"
        assert tasks[3]["reason"] == "task 2 is blocked"
        result = claw(repo, "run")
        assert result.returncode == 0, result.stderr
        assert "nothing to run" not in result.stdout
        assert "task 2 is blocked: task 1 was cancelled (`claw retry 1` unblocks it)" in result.stdout
        assert "task 3 is blocked: task 2 is blocked" in result.stdout
        assert "blocked" in claw(repo, "status").stdout
        claw(repo, "run")
        notifier.pump()
    assert receiver.messages() == ["task 2 (needs the base) is blocked: task 1 was cancelled",
                                   "task 3 (needs the second) is blocked: task 2 is blocked"]
    # A new task that depends on the cancelled one is blocked from the start.
    claw(repo, "add", "also needs the base", "--depends", "1")
    assert by_id(repo)[4]["state"] == "blocked"
    assert claw(repo, "retry", "1").returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["queued"] * 4
    assert claw(repo, "run").returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["merged"] * 4


def test_a_run_that_starts_nothing_says_what_waits_and_why(repo):
    agent = agent_script(repo, "w", 'echo "task $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"w": agent}, auto_approve="[]")
    claw(repo, "add", "the base")
    claw(repo, "run")                                   # task 1 now waits for review
    claw(repo, "add", "needs the base", "--depends", "1")
    result = claw(repo, "run")
    assert "nothing to run" not in result.stdout
    assert "task 2 waits for task 1 to land" in result.stdout


def test_status_says_on_the_tasks_line_why_approved_work_is_not_landing(repo):
    agent = agent_script(repo, "w", "echo feature > feature.txt\n")
    configure(repo, {"w": agent})
    (repo / "app.txt").write_text("my unsaved work\n")
    claw(repo, "add", "a feature")
    assert claw(repo, "run").returncode == 0
    [task] = status_json(repo)
    assert task["state"] == "approved"
    assert task["merge_wait"].startswith(f"your checkout of 'main' at {repo} has uncommitted changes (app.txt)")
    lines = claw(repo, "status").stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if "a feature" in line)
    assert lines[row + 1].startswith("   └ merge waits: your checkout of 'main'")  # its note, under it
    assert "merge waits: your checkout" in claw(repo, "show", "1").stdout
    # Once the person commits, the merge lands and the reason is gone.
    git.git("commit", "-qam", "my work", cwd=repo)
    assert claw(repo, "merge").returncode == 0
    [task] = status_json(repo)
    assert task["state"] == "merged" and task["merge_wait"] is None
    assert json.loads(claw(repo, "show", "1", "--json").stdout)["merge_wait"] is None


def test_a_dependent_of_a_bounced_task_waits_for_its_resolve_task_and_goes_on_when_it_lands(project):
    store = project.store
    first = store.add_task("edit one")
    dependent = store.add_task("builds on edit one", depends_on=[first.id])
    resolve = store.add_task("Resolve conflict: edit one", resolves=first.id)   # as the merge queue does
    store.move_task(first.id, TaskState.failed, "task.failed", reason="conflicts with the target branch")
    blocked = store.get_task(dependent.id)
    assert blocked.state == TaskState.blocked
    assert blocked.reason == f"task {first.id} failed (task {resolve.id} resolves its conflict)"
    for state in (TaskState.running, TaskState.approved, TaskState.merged):
        store.move_task(resolve.id, state, f"task.{state}")
    closed = store.get_task(first.id)
    assert (closed.state, closed.resolved_by, closed.reason) == (TaskState.resolved, resolve.id,
                                                                  f"resolved by task {resolve.id}")
    assert store.get_task(dependent.id).state == TaskState.queued
    assert store.dependencies_met(store.get_task(dependent.id))
    assert [e["kind"] for e in store.events(task_id=dependent.id)] == ["task.added", "task.blocked", "task.unblocked"]


def test_claw_depends_drops_a_cancelled_dependency_and_the_task_goes_on(repo):
    agent = agent_script(repo, "w", 'echo "task $CLAW_TASK_ID" > "file-$CLAW_TASK_ID.txt"\n')
    configure(repo, {"w": agent})
    claw(repo, "add", "the base")
    claw(repo, "add", "other base")
    claw(repo, "add", "needs the base", "--depends", "1")
    claw(repo, "cancel", "1")
    assert by_id(repo)[3]["state"] == "blocked"
    refused = claw(repo, "depends", "1", "--on", "3")
    assert refused.returncode == 1 and "task 1 is cancelled" in refused.stderr
    claw(repo, "retry", "1")
    refused = claw(repo, "depends", "1", "--on", "3")
    assert refused.returncode == 1 and "task 1 cannot wait for task 3: task 3 waits for it" in refused.stderr
    assert "Traceback" not in refused.stderr
    claw(repo, "cancel", "1")
    result = claw(repo, "depends", "3", "--on", "2")
    assert result.returncode == 0 and "task 3 depends on 2; queued" in result.stdout
    assert claw(repo, "run").returncode == 0
    assert [t["state"] for t in status_json(repo)] == ["cancelled", "merged", "merged"]
