"""Escapes through git: an agent rewrites what its worktree tells git, hoping that clawfleet's
own git calls (outside any sandbox, as the person) run a program of its choosing.

Each agent here runs unsandboxed (`[sandbox] enabled = false`, a `command` agent), as an
attacker that got past the sandbox or never had one would. Its payload leaves a marker and
installs a `post-merge` hook in the person's repository; the tests assert that no marker
appears, no hook is installed, the attempt is reported as tampered, and the fleet goes on: an
unrelated task still lands, and the next `claw run` starts cleanly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clawfleet import git

from conftest import agent_script, claw, write_config

# Each attack is the agent's shell: it plants the payload, then stops. $GCD is the common git
# dir, $ADM the worktree's own git dir, $P the payload's path (all set by the preamble).
ATTACKS = {
    # The attack of 2026-12-01: a forged git dir with the real objects as alternates.
    "forged gitdir": """
        git init -q --bare .evil
        echo "$GCD/objects" > .evil/objects/info/alternates
        git rev-parse HEAD > .evil/HEAD
        cp "$ADM/index" .evil/index
        git config --file .evil/config core.bare false
        git config --file .evil/config core.fsmonitor "$P"
        echo "work done in the forged repository" > forged.txt
        echo "gitdir: $PWD/.evil" > .git
        """,
    # `.git` replaced by a repository of the agent's own.
    "git directory": """
        rm .git
        git init -q .
        git config core.fsmonitor "$P"
        mkdir -p .git/hooks && cp "$P" .git/hooks/post-commit && cp "$P" .git/hooks/post-checkout
        echo "work" > mine.txt
        """,
    # `.git` a symbolic link to a forged git dir.
    "git symlink": """
        git init -q --bare .evil
        echo "$GCD/objects" > .evil/objects/info/alternates
        git rev-parse HEAD > .evil/HEAD
        cp "$ADM/index" .evil/index
        git config --file .evil/config core.bare false
        git config --file .evil/config core.fsmonitor "$P"
        rm .git && ln -s .evil .git
        echo "work" > linked.txt
        """,
    # The worktree's own config (read when the person has extensions.worktreeConfig on).
    "worktree config": """
        mkdir -p "$PWD/.hooks"
        for hook in post-commit post-checkout post-merge reference-transaction; do
            cp "$P" "$PWD/.hooks/$hook"
        done
        git config --file "$ADM/config.worktree" core.fsmonitor "$P"
        git config --file "$ADM/config.worktree" core.hooksPath "$PWD/.hooks"
        echo "work" > configured.txt
        """,
    # Attributes naming drivers whose commands the worktree's config supplies.
    "attributes and drivers": """
        printf '* filter=evil diff=evil merge=evil\\n' > .gitattributes
        git config --file "$ADM/config.worktree" filter.evil.clean "$P"
        git config --file "$ADM/config.worktree" filter.evil.smudge "$P"
        git config --file "$ADM/config.worktree" diff.evil.textconv "$P"
        git config --file "$ADM/config.worktree" diff.external "$P"
        git config --file "$ADM/config.worktree" merge.evil.driver "$P"
        echo "work" > filtered.txt
        """,
}


def payload_preamble(marks: Path) -> str:
    """Sets $GCD (the common git dir), $ADM (the worktree's own git dir) and writes the payload
    $P: it leaves a marker and installs a post-merge hook in the person's repository."""
    return f"""
        GCD=$(git rev-parse --path-format=absolute --git-common-dir)
        ADM=$(git rev-parse --path-format=absolute --git-dir)
        P="$PWD/.payload.sh"
        cat > "$P" <<EOF
        #!/bin/sh
        echo "ran: \\$0 \\$*" >> {marks}/payload
        mkdir -p "$GCD/hooks"
        printf '#!/bin/sh\\necho post-merge ran >> {marks}/hook\\n' > "$GCD/hooks/post-merge"
        chmod +x "$GCD/hooks/post-merge"
        exit 1
        EOF
        chmod +x "$P"
        """


def configure(repo: Path, attack: str, marks: Path) -> None:
    evil = agent_script(repo, "evil", payload_preamble(marks) + ATTACKS[attack])
    good = agent_script(repo, "good", """
        echo "unrelated work of task $CLAW_TASK_ID" > "good-$CLAW_TASK_ID.txt"
        echo "wrote good-$CLAW_TASK_ID.txt" > "$CLAW_SUMMARY_FILE"
        """)
    write_config(repo, f"""
        [fleet]
        slots = 1
        default_agent = "good"
        attempt_timeout = 60
        max_attempts = 1
        retry_backoff = 0
        [checks]
        commands = []
        [review]
        auto_approve = ["low", "normal", "high"]
        [sandbox]
        enabled = false
        [agents.evil]
        kind = "command"
        command = ["{evil}"]
        [agents.good]
        kind = "command"
        command = ["{good}"]
        """)


def tasks(repo: Path) -> list[dict]:
    result = claw(repo, "status", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_never_ran(repo: Path, marks: Path) -> None:
    assert not (marks / "payload").exists(), (marks / "payload").read_text()
    assert not (marks / "hook").exists(), (marks / "hook").read_text()
    assert not (git.common_dir(repo) / "hooks" / "post-merge").exists()


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_agent_rewriting_what_its_worktree_tells_git_runs_nothing_and_the_fleet_goes_on(repo, tmp_path, attack):
    marks = tmp_path / "marks"
    marks.mkdir()
    if attack in ("worktree config", "attributes and drivers"):
        # The person's own choice (sparse checkouts turn it on): each worktree's config.worktree is read.
        subprocess.run(["git", "config", "extensions.worktreeConfig", "true"], cwd=repo, check=True)
    configure(repo, attack, marks)
    assert claw(repo, "add", "the attack", "--agent", "evil", "--priority", "9").returncode == 0
    assert claw(repo, "add", "unrelated work").returncode == 0
    first = claw(repo, "run", timeout=180)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    assert_never_ran(repo, marks)
    attacked, unrelated = tasks(repo)
    assert unrelated["state"] == "merged", unrelated
    assert (repo / "good-2.txt").read_text() == "unrelated work of task 2\n"
    # The attempt is over and says what the agent did to its worktree.
    assert attacked["state"] != "merged", attacked
    if True:
        assert attacked["state"] == "failed"
        reason = attacked["latest_attempt"]["reason"] or attacked["reason"]
        assert ".git" in reason or "config.worktree" in reason, reason
        assert "agent" in reason, reason
    # Nothing of the attacker's forged repository reached the person's main branch.
    assert "forged.txt" not in git.tracked_paths(repo, "main")
    # The next run starts (recovery does not trip over the tampered worktree) and lands new work.
    assert claw(repo, "add", "more unrelated work").returncode == 0
    second = claw(repo, "run", timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert tasks(repo)[2]["state"] == "merged"
    assert (repo / "good-3.txt").exists()
    assert_never_ran(repo, marks)
    # The tampered worktree is never handed to another attempt.
    pool = claw(repo, "workspace", "list", "--json")
    if pool.returncode == 0:
        for item in json.loads(pool.stdout):
            if item.get("attempt_id") == attacked["latest_attempt"]["id"]:
                assert item["state"] in ("quarantined",), item


def test_head_switched_to_main_does_not_make_clawfleet_commit_on_main(repo, tmp_path):
    """An agent points its worktree's HEAD at the target: clawfleet's commit of its work goes
    to the attempt's own branch, never to main."""
    agent = agent_script(repo, "switcher", """
        git symbolic-ref HEAD refs/heads/main
        echo "unreviewed" > sneaky.txt
        echo "sneaked onto main" > "$CLAW_SUMMARY_FILE"
        """)
    write_config(repo, f"""
        [fleet]
        default_agent = "switcher"
        [review]
        auto_approve = []
        [sandbox]
        enabled = false
        [agents.switcher]
        kind = "command"
        command = ["{agent}"]
        """)
    main_before = git.rev(repo, "main")
    assert claw(repo, "add", "switch to main").returncode == 0
    result = claw(repo, "run", timeout=120)
    assert result.returncode == 0, result.stderr
    assert git.rev(repo, "main") == main_before
    task = tasks(repo)[0]
    assert task["state"] == "review"
    branch = task["latest_attempt"]["branch"]
    assert git.out("show", f"{branch}:sneaky.txt", cwd=repo) == "unreviewed"
    assert task["latest_attempt"]["head_commit"] == git.rev(repo, branch)


def test_a_file_copied_into_a_workspace_never_goes_through_a_link_an_agent_committed(repo, tmp_path):
    """An attempt commits `config -> <a folder of the person's>`; when the merge queue's worktree
    is made ready at that commit, the person's `config/.env` is copied in, not written into the
    folder the link names (nor is anything there deleted)."""
    from clawfleet.procs import ChildGroups
    from clawfleet.project import Project
    from clawfleet.workspace import WorkspacePool, prepare_integration

    outside = tmp_path / "persons-other-folder"
    outside.mkdir()
    (outside / "keep.txt").write_text("the person's\n")
    (repo / "config").mkdir()
    (repo / "config" / ".env").write_text("SECRET=1\n")
    subprocess.run(["git", "config", "--local", "core.excludesFile", "/dev/null"], cwd=repo, check=True)
    (git.common_dir(repo) / "info").mkdir(exist_ok=True)
    (git.common_dir(repo) / "info" / "exclude").write_text("/config/\n/.claw/run/\n")
    write_config(repo, '[workspace]\ninclude = ["config/.env"]\n')
    project = Project(repo)
    worktree = project.worktrees_dir / "integration"
    worktree.parent.mkdir(parents=True)
    git.add_detached_worktree(repo, worktree, git.rev(repo, "HEAD"))
    (worktree / "config").symlink_to(outside)     # what the agent's commit holds
    subprocess.run(["git", "add", "config"], cwd=worktree, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "link"], cwd=worktree, check=True)
    head = git.rev(worktree, "HEAD")
    WorkspacePool(project)  # the pool's store exists
    prepare_integration(project, worktree, head, ChildGroups(tmp_path / "children"), None)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (worktree / "config").is_dir() and not (worktree / "config").is_symlink()
    assert (worktree / "config" / ".env").read_text() == "SECRET=1\n"
    project.store.close()
