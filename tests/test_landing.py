"""Landing keeps main green commit by commit: one commit per attempt, a blocked landing blocks
only itself, a change already on main claims no one's commit, footprints held until landing."""

from __future__ import annotations

import json
import subprocess

from clawfleet import git
from clawfleet.mergequeue import ALREADY_ON_MAIN, MergeQueue, landing_message
from clawfleet.models import Attempt, AttemptState, Task, TaskState
from clawfleet.project import Project, initialize
from clawfleet.scheduler import for_project

from conftest import agent_script, claw, write_config
from test_run import configure, status_json

CHECK = "grep -q good value.txt"
# Red first (the runner commits it), green in the fix round; the summary carries a terminal escape.
FIXER = """
    if grep -q "The checks failed" "$CLAW_PROMPT_FILE"; then
        echo good > value.txt
        printf 'Wrote a good value.\\n\\033]0;owned\\007\\033[31mred\\033[0m and a bell\\a\\n' > "$CLAW_SUMMARY_FILE"
    else
        echo bad > value.txt
    fi
    """


def with_merge(repo, text: str) -> None:
    config = repo / ".claw" / "config.toml"
    config.write_text(config.read_text().replace("[review]\n", f"[merge]\n{text}\n[review]\n"))


def red_commits(repo, before: str, check: str) -> list[str]:
    """The commits in before..main at which `check` fails, each checked out on its own."""
    scratch = repo.parent / "one-by-one"
    red = []
    for commit in git.commits_between(repo, before, "main"):
        git.add_detached_worktree(repo, scratch, commit, lock=False)
        if subprocess.run(["bash", "-c", check], cwd=scratch).returncode != 0:
            red.append(commit)
        git.remove_worktree(repo, scratch)
    return red


def test_a_fix_round_lands_as_one_green_commit_named_after_its_task(repo):
    configure(repo, {"fixer": agent_script(repo, "fixer", FIXER)}, checks=[CHECK], auto_approve="[]")
    claw(repo, "add", "write a good value")
    assert claw(repo, "run").returncode == 0
    attempt = status_json(repo)[0]["latest_attempt"]
    assert attempt["fix_rounds"] == 1
    assert len(git.commits_between(repo, attempt["base_commit"], attempt["branch"])) == 2  # red, then green
    before = git.branch_tip(repo, "main")
    assert claw(repo, "approve", "1").returncode == 0
    assert claw(repo, "merge").returncode == 0
    landed = git.commits_between(repo, before, "main")
    assert len(landed) == 1 and red_commits(repo, before, CHECK) == []
    message = git.out("log", "-1", "--format=%B", "main", cwd=repo)
    assert message.splitlines()[0] == "write a good value"
    assert "Wrote a good value." in message and "red and a bell" in message
    assert "\x1b" not in message and "\a" not in message and "owned" not in message
    trailers = git.out("log", "-1", "--format=%(trailers:only,unfold)", "main", cwd=repo).splitlines()
    assert trailers == ["Claw-Task: 1", "Claw-Attempt: 1", "Claw-Agent: command/default"]


def test_without_squash_every_commit_is_checked_and_a_red_one_refuses_the_attempt(repo):
    configure(repo, {"fixer": agent_script(repo, "fixer", FIXER)}, checks=[CHECK], auto_approve="[]")
    with_merge(repo, "squash = false")
    claw(repo, "add", "write a good value")
    assert claw(repo, "run").returncode == 0
    before = git.branch_tip(repo, "main")
    assert claw(repo, "approve", "1").returncode == 0
    result = claw(repo, "merge")
    assert result.returncode == 1
    task = status_json(repo)[0]
    assert task["state"] == "failed"
    assert "at its commit 1 of 2" in task["reason"] and "squash = true" in task["reason"]
    assert git.branch_tip(repo, "main") == before


def test_an_untracked_file_in_the_way_holds_back_only_its_own_landing(repo):
    agent = agent_script(repo, "w", """
        case "$CLAW_TASK_ID" in
            1) echo "from the agent" > notes.txt ;;
            *) echo "feature $CLAW_TASK_ID" > "feature-$CLAW_TASK_ID.txt" ;;
        esac
        """)
    configure(repo, {"w": agent}, auto_approve="[]")
    for title in ("write notes", "feature two", "feature three"):
        claw(repo, "add", title)
    assert claw(repo, "run").returncode == 0
    for task in (1, 2, 3):
        assert claw(repo, "approve", str(task)).returncode == 0
    (repo / "notes.txt").write_text("the person's own notes\n")  # untracked, in task 1's way
    result = claw(repo, "merge")
    assert result.returncode == 1
    states = {t["id"]: t["state"] for t in status_json(repo)}
    assert states == {1: "approved", 2: "merged", 3: "merged"}
    assert f"task 1: merge waits: an untracked file of yours is where it writes one: {repo / 'notes.txt'}" \
        in " ".join(result.stdout.split())
    assert "Move it away or delete it" in result.stdout
    assert (repo / "notes.txt").read_text() == "the person's own notes\n"
    assert (repo / "feature-2.txt").exists() and (repo / "feature-3.txt").exists()
    # Once the file is out of the way, task 1 lands too.
    (repo / "notes.txt").rename(repo.parent / "notes.txt")
    assert claw(repo, "merge").returncode == 0
    assert (repo / "notes.txt").read_text() == "from the agent\n"


def test_the_same_change_twice_lands_once_and_the_second_claims_no_commit(repo):
    agent = agent_script(repo, "same", "echo shared > same.txt\n")
    configure(repo, {"same": agent}, auto_approve="[]")
    claw(repo, "add", "make the change")
    claw(repo, "add", "make the same change")
    assert claw(repo, "run", "--ignore-footprints").returncode == 0
    for task in (1, 2):
        assert claw(repo, "approve", str(task)).returncode == 0
    before = git.branch_tip(repo, "main")
    result = json.loads(claw(repo, "merge", "--json").stdout)
    first = git.branch_tip(repo, "main")
    assert git.commits_between(repo, before, "main") == [first]
    assert (result[0]["outcome"], result[0]["commit"]) == ("merged", first)
    assert (result[1]["outcome"], result[1]["reason"], result[1]["commit"]) == ("merged", ALREADY_ON_MAIN, None)
    tasks = status_json(repo)
    assert [t["state"] for t in tasks] == ["merged", "merged"]
    assert tasks[1]["reason"] == ALREADY_ON_MAIN and first[:10] not in tasks[1]["reason"]
    assert tasks[1]["latest_attempt"]["head_commit"] != first


def approved_attempt(project: Project, title: str, files: dict[str, str], footprint=(),
                     checks_passed: bool = True) -> tuple[Task, Attempt]:
    """A task whose attempt changed `files` on the target's tip and was approved."""
    root = project.root
    base = git.branch_tip(root, "main")
    task = project.store.add_task(title, footprint=list(footprint))
    attempt = project.store.start_attempt(task.id, agent="builtin", base_commit=base,
                                          branch_for=lambda n: f"claw/{task.id}-{n}")
    scratch = root.parent / f"scratch-{task.id}"
    git.add_detached_worktree(root, scratch, base, lock=False)
    for name, text in files.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    head = git.commit_all(scratch, title)
    git.remove_worktree(root, scratch)
    git.git("branch", attempt.branch, head, cwd=root)
    project.store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready", task_state=TaskState.approved,
                                 head_commit=head, checks_passed=checks_passed)
    return task, project.store.finish_attempt(attempt.id, AttemptState.approved, "attempt.approved")


def test_an_approved_task_holds_its_footprint_until_it_lands(repo):
    initialize(repo)
    project = Project(repo)
    first, _ = approved_attempt(project, "edit the app", {"app.txt": "first\n"})
    second = project.store.add_task("edit the app again", footprint=["app.txt"])
    elsewhere = project.store.add_task("edit the readme", footprint=["README.md"])
    plan = for_project(project).plan(slots=4)
    assert [t.id for t in plan.start] == [elsewhere.id]
    assert plan.waiting[second.id] == f"footprint overlaps task {first.id}, approved and waiting to land (app.txt)"
    # Once it has landed, the second starts from the new base.
    assert MergeQueue(project).land_all()[0].outcome == "merged"
    assert second.id in [t.id for t in for_project(project).plan(slots=4).start]


def test_a_commit_message_never_carries_terminal_escapes_or_control_characters():
    task = Task(id=7, title="fix \x1b[2J\x1b]0;pwned\x07the\rparser\x00")
    attempt = Attempt(id=3, task_id=7, number=2, agent="a", summary="done\x1b[31m here\x1bc\n\x08ok\n")
    message = landing_message(task, attempt, "claude/sonnet\x1b[0m")
    assert message == ("fix theparser\n\ndone here\nok\n\n"
                       "Claw-Task: 7\nClaw-Attempt: 2\nClaw-Agent: claude/sonnet\n")


def test_a_batch_is_checked_at_its_top_only_when_each_commit_is_known_green(repo):
    # needs.txt alone is red; with provides.txt (the next task) the top of a batch of both is green.
    check = "test ! -f needs.txt || test -f provides.txt"
    write_config(repo, f"""
        [checks]
        commands = ["{check}"]
        [merge]
        batch_size = 2
        """)
    initialize(repo)
    project = Project(repo)
    before = git.branch_tip(repo, "main")
    red, _ = approved_attempt(project, "needs a file", {"needs.txt": "x\n"}, checks_passed=False)  # a person's call
    green, _ = approved_attempt(project, "provides the file", {"provides.txt": "y\n"})
    results = {r.task_id: r for r in MergeQueue(project).land_all()}
    assert results[red.id].outcome == "bounced" and "checks failed after rebase" in results[red.id].reason
    assert results[green.id].outcome == "merged"
    assert red_commits(repo, before, check) == [] and len(git.commits_between(repo, before, "main")) == 1


def test_a_rewritten_target_still_gets_one_commit_per_attempt(repo):
    initialize(repo)
    project = Project(repo)
    task, _ = approved_attempt(project, "add a feature", {"feature.txt": "f\n"})
    # The person rewrites the commit the attempt started from: its base is no longer on main.
    (repo / "app.txt").write_text("one, amended\n")
    git.git("commit", "-q", "--amend", "-am", "initial, amended", cwd=repo)
    before = git.branch_tip(repo, "main")
    assert MergeQueue(project).land_all()[0].outcome == "merged"
    assert len(git.commits_between(repo, before, "main")) == 1
    assert git.out("log", "-1", "--format=%s%n%(trailers:only,unfold)", "main", cwd=repo).splitlines() == \
        ["add a feature", "Claw-Task: 1", "Claw-Attempt: 1", "Claw-Agent: builtin/default"]
    assert (repo / "feature.txt").read_text() == "f\n" and (repo / "app.txt").read_text() == "one, amended\n"


def test_a_bounce_is_not_repeated_when_the_target_moves_during_the_checks(repo, tmp_path):
    # The check commits to main the first time it runs, as a person would meanwhile.
    mover = tmp_path / "mover.sh"
    mover.write_text(f"#!/usr/bin/env bash\nset -e\n[ -e {tmp_path}/moved ] && exit 0\ntouch {tmp_path}/moved\n"
                     f"echo meanwhile > {repo}/person.txt\ngit -C {repo} add person.txt\n"
                     f"git -C {repo} commit -qm 'the person, meanwhile'\n")
    mover.chmod(0o755)
    write_config(repo, f"""
        [checks]
        commands = ["{mover}"]
        [merge]
        batch_size = 2
        """)
    initialize(repo)
    project = Project(repo)
    first, _ = approved_attempt(project, "edit one", {"app.txt": "one\ntwo\n"})
    second, _ = approved_attempt(project, "edit two", {"app.txt": "one\nthree\n"})
    (repo / "other.txt").write_text("moves the tip past their base\n")
    git.git("add", "other.txt", cwd=repo)
    git.git("commit", "-qm", "other", cwd=repo)
    results = MergeQueue(project).land_all()
    assert sorted((r.task_id, r.outcome) for r in results) == [(first.id, "merged"), (second.id, "bounced")]
    resolving = [t for t in project.store.list_tasks() if t.title.startswith("Resolve conflict")]
    assert [t.title for t in resolving] == ["Resolve conflict: edit two"]
    assert (repo / "person.txt").read_text() == "meanwhile\n" and (repo / "app.txt").read_text() == "one\ntwo\n"


def test_an_untracked_file_where_a_landing_makes_a_folder_holds_back_only_that_landing(repo):
    initialize(repo)
    project = Project(repo)
    docs, _ = approved_attempt(project, "write the docs", {"docs/guide.md": "guide\n"})
    other, _ = approved_attempt(project, "something else", {"other.txt": "other\n"})
    (repo / "docs").write_text("the person's own file called docs\n")
    results = {r.task_id: r for r in MergeQueue(project).land_all()}
    assert results[docs.id].outcome == "waiting" and results[docs.id].own
    assert str(repo / "docs") in results[docs.id].reason
    assert results[other.id].outcome == "merged" and (repo / "other.txt").exists()
    assert (repo / "docs").read_text() == "the person's own file called docs\n"
