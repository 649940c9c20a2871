"""The ref watch against a real repository: who moved what, by the reflog, and what a look costs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from clawfleet import git
from clawfleet.refwatch import RefWatch, status_lines


def run_git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, name: str, message: str) -> str:
    (repo / name).write_text(message + "\n")
    run_git("add", name, cwd=repo)
    run_git("commit", "-q", "-m", message, cwd=repo)
    return run_git("rev-parse", "HEAD", cwd=repo)


def watch(project) -> RefWatch:
    return RefWatch(project, attempts_ran=False, interval=0)


def test_nothing_is_news_while_nothing_runs(project):
    refs = watch(project)
    commit(project.root, "a.txt", "mine")
    run_git("config", "alias.st", "status", cwd=project.root)
    assert refs.look(active=False) == []
    assert project.store.events(kinds=["security.refs_changed", "refs.moved"]) == []


def test_the_persons_commit_is_normal_and_a_reset_is_an_alarm(project):
    repo = project.root
    refs = watch(project)
    first = run_git("rev-parse", "HEAD", cwd=repo)
    second = commit(repo, "a.txt", "my work")
    [change] = refs.look(active=True)
    assert (change.name, change.old, change.new, change.alarm) == ("refs/heads/main", first, second, False)
    assert "commit: my work" in change.by and "normal" in change.describe()
    run_git("reset", "-q", "--hard", first, cwd=repo)
    [change] = refs.look(active=True)
    assert change.alarm and "reset: moving to" in change.by
    assert status_lines(project) == [change.describe()]


def test_a_ref_written_behind_gits_back_and_a_landing(project):
    repo = project.root
    refs = watch(project)
    tip = run_git("rev-parse", "HEAD", cwd=repo)
    run_git("switch", "-q", "-c", "side", cwd=repo)
    other = commit(repo, "b.txt", "elsewhere")
    (git.common_dir(repo) / "refs" / "heads" / "main").write_text(other + "\n")  # no reflog entry
    [change] = refs.look(active=True)
    assert change.alarm and "behind git's back" in change.by
    git.update_ref(repo, "main", tip, other, f"{git.LANDING} task(s) 1")  # the merge queue's own
    assert refs.look(active=True) == []


def test_claw_branches_hooks_and_config(project):
    repo = project.root
    refs = watch(project)
    base = run_git("rev-parse", "HEAD", cwd=repo)
    worktree = project.worktrees_dir / "ws-1"
    worktree.parent.mkdir(parents=True)
    git.add_worktree_on_branch(repo, worktree, "claw/1-x", base)   # made by clawfleet: not news
    (worktree / "w.txt").write_text("work\n")
    ours = git.commit_all(worktree, "attempt work", branch="claw/1-x")  # committed by clawfleet
    assert refs.look(active=True) == []
    agent = commit(worktree, "own.txt", "the agent's own commit")  # normal for an unsandboxed CLI agent
    [change] = refs.look(active=True)
    assert not change.alarm and change.new == agent and "its branch" in change.by
    run_git("update-ref", "refs/heads/claw/1-x", ours, cwd=repo)  # no message: an alarm
    hook = git.common_dir(repo) / "hooks" / "post-merge"
    hook.write_text("#!/bin/sh\necho hi\n")
    run_git("config", "core.fsmonitor", "/tmp/evil secret-token", cwd=repo)
    changes = refs.look(active=True)
    assert [(c.what, c.name, c.alarm) for c in changes] == [
        ("ref", "refs/heads/claw/1-x", True), ("hook", "post-merge", True), ("config", "core.fsmonitor", True)]
    assert all("secret-token" not in c.describe() and "secret-token" not in str(c.new) for c in changes)
    git.delete_branch(repo, "claw/1-x")  # clawfleet deletes branches of attempts that are over
    assert refs.look(active=False) == []  # the last look saw nothing running: still compared, nothing new


def test_changes_made_while_no_orchestrator_watched_are_reported_at_the_next_start(project):
    repo = project.root
    watch(project)
    first = run_git("rev-parse", "HEAD", cwd=repo)
    second = commit(repo, "a.txt", "meanwhile")
    run_git("update-ref", "refs/heads/main", first, cwd=repo)
    run_git("update-ref", "refs/heads/main", second, cwd=repo)   # the last word: no message
    later = RefWatch(project, attempts_ran=True, interval=0)      # attempts ran while none watched
    [change] = later.look(active=True)
    assert change.alarm and change.new == second


def test_what_a_look_costs(project, capsys):
    """A look with nothing changed is a few lstat calls; a change costs the git calls."""
    repo = project.root
    base = run_git("rev-parse", "HEAD", cwd=repo)
    for n in range(20):  # a fleet's worth of branches
        run_git("branch", f"claw/{n}-x", base, cwd=repo)
    refs = watch(project)
    started = time.perf_counter()
    for _ in range(200):
        refs.look(active=True)
    quiet_ms = (time.perf_counter() - started) / 200 * 1000
    started = time.perf_counter()
    for n in range(10):
        commit(repo, f"c{n}.txt", f"work {n}")
        refs.look(active=True)
    each_commit = (time.perf_counter() - started) / 10 * 1000
    with capsys.disabled():
        print(f"\nref watch: quiet look {quiet_ms:.3f} ms; a commit plus the look that reports it {each_commit:.1f} ms")
    assert quiet_ms < 5
