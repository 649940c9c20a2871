"""git.py against real repositories: branch names for any title, commits, rebase, compare-and-swap."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.errors import GitError

NASTY_TITLES = {
    "double quotes": 'Fix "quoted" "things"',
    "single quotes": "Don't break 'this'",
    "semicolon": "a; rm -rf ~; b",
    "command substitution": "$(rm -rf /)",
    "backticks": "`reboot` now",
    "chinese": "添加用户登录功能",
    "emoji": "🚀🔥✨",
    "mixed unicode": "Café naïve résumé — über",
    "500 characters": "x" * 250 + " y" * 125,
    "only punctuation": "!!!???...---",
    "leading dashes": "--force --delete everything",
    "leading dots": "...hidden",
    "double dot": "a..b",
    "at brace": "HEAD@{1} reflog",
    "lock suffix": "refs.lock",
    "ends with dot": "finish.",
    "slashes": "a//b/../c/",
    "control characters": "tab\there\nnewline\x00nul\x7f",
    "ref glob chars": "what? *[all]* ~1 ^2 :x \\y",
    "empty": "",
    "spaces only": "   ",
}


def run_git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def head(cwd: Path, ref: str = "HEAD") -> str:
    return run_git("rev-parse", ref, cwd=cwd).stdout.strip()


def commit_file(cwd: Path, name: str, text: str, message: str) -> str:
    (cwd / name).write_text(text)
    assert run_git("add", name, cwd=cwd).returncode == 0
    assert run_git("commit", "-q", "-m", message, cwd=cwd).returncode == 0
    return head(cwd)


# -- branch names ----------------------------------------------------------------------------

@pytest.mark.parametrize("title", NASTY_TITLES.values(), ids=NASTY_TITLES.keys())
def test_branch_name_is_valid_for_any_title(repo, title):
    name = git.branch_name(7, title)
    assert name.startswith("claw/7-")
    assert len(name) <= 60
    assert run_git("check-ref-format", "--branch", name, cwd=repo).returncode == 0, name
    # And git really creates it, under exactly that name.
    created = run_git("branch", name, "main", cwd=repo)
    assert created.returncode == 0, created.stderr
    assert run_git("for-each-ref", "--format=%(refname:short)", "refs/heads/claw/", cwd=repo).stdout.split() == [name]
    assert head(repo, f"refs/heads/{name}") == head(repo, "main")


def test_branch_names_for_later_attempts_differ(repo):
    first, second = git.branch_name(3, "Same title"), git.branch_name(3, "Same title", attempt=2)
    assert first == "claw/3-same-title" and second == "claw/3-same-title-2"
    for name in (first, second):
        assert run_git("branch", name, cwd=repo).returncode == 0


def test_titles_without_ascii_get_distinct_branches():
    assert git.branch_name(1, "添加登录") != git.branch_name(1, "删除登录")


# -- commits -----------------------------------------------------------------------------------

def test_commit_all_returns_none_without_a_change(repo):
    before = head(repo)
    assert git.commit_all(repo, "nothing") is None
    assert head(repo) == before


def test_commit_all_commits_every_change(repo):
    before = head(repo)
    (repo / "app.txt").write_text("two\n")
    (repo / "new").mkdir()
    (repo / "new" / "file.txt").write_text("fresh\n")
    (repo / "README.md").unlink()
    sha = git.commit_all(repo, "all of it")
    assert sha is not None and len(sha) == 40
    assert sha == head(repo)
    assert head(repo, "HEAD~1") == before
    changed = run_git("show", "--name-status", "--format=%s", sha, cwd=repo).stdout.split("\n")
    assert changed[0] == "all of it"
    assert sorted(line for line in changed[1:] if line) == ["A\tnew/file.txt", "D\tREADME.md", "M\tapp.txt"]
    assert run_git("status", "--porcelain", cwd=repo).stdout == ""


def test_commit_all_works_without_a_git_identity(repo, monkeypatch, tmp_path):
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (repo / "app.txt").write_text("changed by an agent\n")
    sha = git.commit_all(repo, "agent work")
    assert sha == head(repo)
    assert run_git("log", "-1", "--format=%ae", cwd=repo).stdout.strip() == "claw@localhost"


def test_commit_all_says_why_a_commit_with_changes_failed(repo):
    before = head(repo)
    (repo / "app.txt").write_text("two\n")
    with pytest.raises(GitError, match="empty commit message"):
        git.commit_all(repo, " \n\n")  # as `git commit` would: nothing committed, nothing lost
    assert head(repo) == before
    assert (repo / "app.txt").read_text() == "two\n"


def test_commit_all_leaves_automatic_maintenance_to_the_person(repo, monkeypatch):
    trace = repo.parent / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    run_git("commit", "-q", "--allow-empty", "-m", "by hand", cwd=repo)
    assert "maintenance run --auto" in trace.read_text()  # what git does after a commit by default
    trace.unlink()
    (repo / "app.txt").write_text("two\n")
    assert git.commit_all(repo, "by the fleet") == head(repo)
    traced = trace.read_text()
    assert "commit" in traced and "maintenance run --auto" not in traced


# -- worktrees ---------------------------------------------------------------------------------

def test_a_worktree_on_a_new_branch_in_one_call(repo):
    base = head(repo)
    worktree = repo.parent / "wt"
    git.add_worktree_on_branch(repo, worktree, "claw/1-new", base)
    assert git.current_branch(worktree) == "claw/1-new"
    assert git.rev(worktree, "HEAD") == base
    assert git.detached_head(worktree) is None  # on a branch: only git can say where it is


def test_detached_head_is_read_from_the_file_git_keeps(repo):
    base = head(repo)
    worktree = repo.parent / "wt"
    assert run_git("worktree", "add", "-q", "--detach", str(worktree), base, cwd=repo).returncode == 0
    assert git.detached_head(worktree) == base
    commit_file(repo, "app.txt", "two\n", "second")
    run_git("switch", "-q", "--detach", "main", cwd=worktree)
    assert git.detached_head(worktree) == head(repo) != base
    git.start_branch(worktree, "claw/2-x", head(repo))  # no checkout pass: it is there already
    assert git.current_branch(worktree) == "claw/2-x"
    assert git.detached_head(worktree) is None


# -- rebase ------------------------------------------------------------------------------------

@pytest.fixture
def diverged(repo):
    """main and a feature commit that both change app.txt from the same base; a worktree to work in."""
    base = head(repo)
    run_git("switch", "-q", "-c", "feature", cwd=repo)
    feature = commit_file(repo, "app.txt", "feature\n", "feature edit")
    run_git("switch", "-q", "main", cwd=repo)
    main = commit_file(repo, "app.txt", "main\n", "main edit")
    worktree = repo.parent / "integration"
    assert run_git("worktree", "add", "-q", "--detach", str(worktree), base, cwd=repo).returncode == 0
    return base, feature, main, worktree


def test_rebase_onto_reports_conflicts_and_aborts(repo, diverged):
    base, feature, main, worktree = diverged
    (worktree / "leftover.tmp").write_text("untracked\n")
    conflicted = git.rebase_onto(worktree, feature, base, main)
    assert conflicted == ["app.txt"]
    # Aborted: no rebase in progress, nothing modified, back on the attempt's own commit.
    assert run_git("status", "--porcelain", "--untracked-files=no", cwd=worktree).stdout == ""
    for state in ("rebase-merge", "rebase-apply"):
        assert not Path(run_git("rev-parse", "--path-format=absolute", "--git-path", state,
                                cwd=worktree).stdout.strip()).exists()
    assert head(worktree) == feature
    assert (worktree / "app.txt").read_text() == "feature\n"
    assert head(repo, "main") == main and head(repo, "feature") == feature  # no ref moved


def test_rebase_onto_without_conflict_replays_the_commits(repo, diverged):
    base, _, main, worktree = diverged
    run_git("switch", "-q", "-c", "other", base, cwd=repo)
    other = commit_file(repo, "other.txt", "other\n", "other work")
    run_git("switch", "-q", "main", cwd=repo)
    assert git.rebase_onto(worktree, other, base, main) == []
    assert head(worktree, "HEAD~1") == main
    assert (worktree / "other.txt").read_text() == "other\n"
    assert (worktree / "app.txt").read_text() == "main\n"
    assert run_git("status", "--porcelain", cwd=worktree).stdout == ""


# -- compare-and-swap ----------------------------------------------------------------------------

def test_update_ref_moves_a_branch_from_the_expected_value(repo):
    first = head(repo)
    second = commit_file(repo, "b.txt", "b\n", "second")
    run_git("branch", "target", first, cwd=repo)
    git.update_ref(repo, "target", second, first, "claw: land")
    assert head(repo, "refs/heads/target") == second
    assert "claw: land" in run_git("reflog", "-1", "--format=%gs", "refs/heads/target", cwd=repo).stdout


def test_update_ref_with_a_stale_old_value_fails_and_leaves_the_ref(repo):
    first = head(repo)
    second = commit_file(repo, "b.txt", "b\n", "second")
    third = commit_file(repo, "c.txt", "c\n", "third")
    run_git("branch", "target", second, cwd=repo)  # someone moved it since we looked at `first`
    with pytest.raises(GitError) as caught:
        git.update_ref(repo, "target", third, first, "claw: land")
    assert "update-ref" in caught.value.message
    assert head(repo, "refs/heads/target") == second


def test_update_ref_refuses_to_create_when_old_is_given(repo):
    with pytest.raises(GitError):
        git.update_ref(repo, "brand-new", head(repo), head(repo), "claw: land")
    assert run_git("rev-parse", "--verify", "-q", "refs/heads/brand-new", cwd=repo).returncode != 0


# -- nothing an agent wrote is trusted ---------------------------------------------------------

@pytest.fixture
def pooled(repo):
    """A worktree where clawfleet keeps them (under .claw/run), on a branch, as an attempt gets it."""
    worktree = repo / ".claw" / "run" / "worktrees" / "ws-1"
    worktree.parent.mkdir(parents=True)
    git.add_worktree_on_branch(repo, worktree, "claw/1-x", head(repo))
    return worktree


def trap(path: Path, marks: Path) -> str:
    """An executable that leaves a mark when anything runs it."""
    path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marks}\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def test_the_git_dir_comes_from_the_repository_not_from_the_worktree(repo, pooled):
    place = git.checkout_of(pooled)
    assert place.git_dir == git.common_dir(repo) / "worktrees" / "ws-1"
    assert place.work_tree == pooled and place.common == git.common_dir(repo)
    assert git.checkout_of(pooled / "sub" / "folder") == place  # anywhere inside it
    assert git.checkout_of(repo) is None                      # the person's checkout: as usual
    assert git.common_dir(pooled) == git.common_dir(repo)
    assert git.current_branch(pooled) == "claw/1-x"


@pytest.mark.parametrize("forgery", ["gitdir elsewhere", "directory", "symlink", "gone", "commondir"])
def test_a_worktree_whose_git_link_was_forged_is_refused_without_running_git_there(repo, pooled, tmp_path, forgery):
    marks = tmp_path / "marks"
    payload = trap(tmp_path / "payload.sh", marks)
    evil = pooled / ".evil"
    run_git("init", "-q", "--bare", str(evil), cwd=tmp_path)
    run_git("config", "--file", str(evil / "config"), "core.fsmonitor", payload, cwd=tmp_path)
    admin = git.common_dir(repo) / "worktrees" / "ws-1"
    if forgery == "gitdir elsewhere":
        (pooled / ".git").write_text(f"gitdir: {evil}\n")
    elif forgery == "directory":
        (pooled / ".git").unlink()
        run_git("init", "-q", str(pooled), cwd=tmp_path)
        run_git("config", "core.fsmonitor", payload, cwd=pooled)
    elif forgery == "symlink":
        (pooled / ".git").unlink()
        (pooled / ".git").symlink_to(evil)
    elif forgery == "gone":
        (pooled / ".git").unlink()
    else:
        (admin / "commondir").write_text(f"{evil}\n")
    (pooled / "work.txt").write_text("work\n")
    for call in (lambda: git.commit_all(pooled, "work", branch="claw/1-x"),
                 lambda: git.snapshot_commit(pooled), lambda: git.uncommitted(pooled),
                 lambda: git.reset_worktree(pooled, head(repo)), lambda: git.detached_head(pooled),
                 lambda: git.keep_out_of_commits(pooled, [".env"])):
        with pytest.raises(git.WorktreeTampered) as caught:
            call()
        assert "the agent tampered with its worktree" in caught.value.message
    assert not marks.exists()
    assert head(repo, "claw/1-x") == head(repo, "main")  # the branch is untouched
    git.remove_worktree(repo, pooled)  # git refuses a forged one; clawfleet removes it anyway
    assert not pooled.exists() and not admin.exists()


def test_a_worktree_config_that_names_a_program_is_refused(repo, pooled, tmp_path):
    marks = tmp_path / "marks"
    payload = trap(tmp_path / "payload.sh", marks)
    run_git("config", "extensions.worktreeConfig", "true", cwd=repo)
    config = git.common_dir(repo) / "worktrees" / "ws-1" / "config.worktree"
    config.write_text("[core]\n\tsparseCheckout = false\n")  # harmless keys are fine
    (pooled / "a.txt").write_text("a\n")
    assert git.commit_all(pooled, "fine", branch="claw/1-x") is not None
    config.write_text(f"[filter \"evil\"]\n\tclean = {payload}\n")
    (pooled / ".gitattributes").write_text("* filter=evil\n")
    with pytest.raises(git.WorktreeTampered, match="filter.evil.clean"):
        git.commit_all(pooled, "work", branch="claw/1-x")
    assert not marks.exists()


def test_no_hook_of_the_repository_runs_for_clawfleet(repo, pooled, tmp_path):
    marks = tmp_path / "marks"
    main = head(repo, "main")
    run_git("switch", "-q", "-c", "side", cwd=repo)  # (the test's own git runs hooks: before the traps)
    hooks = git.common_dir(repo) / "hooks"
    for name in ("post-checkout", "post-commit", "pre-commit", "reference-transaction", "post-merge",
                 "post-rewrite", "pre-rebase"):
        trap(hooks / name, marks)
    (pooled / "a.txt").write_text("a\n")
    head_commit = git.commit_all(pooled, "work", branch="claw/1-x")
    git.reset_worktree(pooled, main)
    git.start_branch(pooled, "claw/2-y", head_commit)
    other = repo.parent / "other"
    git.add_detached_worktree(repo, other, main)
    assert git.rebase_onto(other, head_commit, main, main) == []
    git.fast_forward_checkout(repo, head_commit)
    assert head(repo, "side") == head_commit
    assert not marks.exists(), marks.read_text()


def test_diffs_run_no_external_diff_or_textconv(repo, tmp_path):
    marks = tmp_path / "marks"
    payload = trap(tmp_path / "payload.sh", marks)
    run_git("config", "diff.external", payload, cwd=repo)
    run_git("config", "diff.evil.textconv", payload, cwd=repo)
    base = head(repo)
    (repo / ".gitattributes").write_text("* diff=evil\n")
    after = commit_file(repo, "app.txt", "two\n", "change")
    assert "+two" in git.diff(repo, base, after)
    assert {s.path for s in git.diff_stats(repo, base, after)} == {"app.txt"}
    assert not marks.exists()


def test_clawfleet_commits_on_the_attempts_branch_whatever_head_says(repo, pooled):
    main = head(repo, "main")
    run_git("symbolic-ref", "HEAD", "refs/heads/main", cwd=pooled)  # an agent points HEAD at main
    (pooled / "sneaky.txt").write_text("unreviewed\n")
    commit = git.commit_all(pooled, "attempt work", branch="claw/1-x")
    assert head(repo, "main") == main
    assert head(repo, "claw/1-x") == commit and head(repo, f"{commit}~1") == main
    assert git.current_branch(pooled) == "claw/1-x"  # put back
    assert git.commit_all(pooled, "nothing new", branch="claw/1-x") is None
    assert "clawfleet: commit attempt work" in run_git("reflog", "-1", "--format=%gs", "claw/1-x", cwd=repo).stdout


def test_files_in_the_git_dir_are_never_read_or_written_through_a_link(repo, pooled, tmp_path):
    admin = git.common_dir(repo) / "worktrees" / "ws-1"
    victim = tmp_path / "victim.txt"
    victim.write_text("the person's file\n")
    (admin / "claw-kept-out").symlink_to(victim)
    assert git.kept_out_of_commits(pooled) == []
    git.keep_out_of_commits(pooled, [".env"])
    assert victim.read_text() == "the person's file\n"
    assert git.kept_out_of_commits(pooled) == [".env"]
    run_git("switch", "-q", "--detach", cwd=pooled)
    detached = (admin / "HEAD").read_text().strip()
    (admin / "HEAD").unlink()
    (tmp_path / "head").write_text(detached + "\n")
    (admin / "HEAD").symlink_to(tmp_path / "head")
    assert git.detached_head(pooled) is None  # not read through the link; git is asked instead


def test_variables_that_would_steer_git_elsewhere_are_ignored(repo, pooled, tmp_path, monkeypatch):
    other = tmp_path / "other"
    git.init_repo(other, {"x.txt": "x\n"})
    ours = head(repo)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert git.rev(repo, "HEAD") == ours
    assert git.current_branch(pooled) == "claw/1-x"


def test_a_snapshot_reads_no_config_of_the_worktree_even_one_written_after_the_check(repo, pooled, tmp_path,
                                                                                     monkeypatch):
    """The radar snapshots while the agent works: its git dir is clawfleet's own, so a
    config.worktree written between the check and git's reading it is never read."""
    marks = tmp_path / "marks"
    payload = trap(tmp_path / "payload.sh", marks)
    run_git("config", "extensions.worktreeConfig", "true", cwd=repo)
    (pooled / ".gitattributes").write_text("* filter=evil\n")
    (pooled / "a.txt").write_text("a\n")
    place = git.checkout_of(pooled)  # checked now; the agent writes its config right after
    (place.git_dir / "config.worktree").write_text(f"[filter \"evil\"]\n\tclean = {payload}\n")
    monkeypatch.setattr(git, "_verify", lambda *args, **options: None)  # the race made certain: checked before
    snapshot = git.snapshot_commit(pooled, "refs/heads/claw/1-x")
    assert not marks.exists()
    assert sorted(git.tracked_paths(repo, snapshot)) == [".gitattributes", "README.md", "a.txt", "app.txt"]
    assert head(repo, f"{snapshot}~1") == head(repo, "claw/1-x")


def test_git_in_a_folder_that_no_longer_exists_says_so(tmp_path):
    """subprocess raises the same FileNotFoundError for a missing working folder as for a
    missing program: a deleted folder was reported as "git is not installed"."""
    with pytest.raises(GitError) as caught:
        git.git("status", cwd=tmp_path / "deleted")
    assert f"{tmp_path / 'deleted'} no longer exists" in caught.value.message
    assert "not installed" not in str(caught.value)


def test_a_refused_fast_forward_leaves_a_file_where_a_folder_would_go(repo):
    base = head(repo)
    run_git("switch", "-q", "-c", "side", cwd=repo)
    (repo / "docs").mkdir()
    landing = commit_file(repo, "docs/guide.md", "guide\n", "docs")
    run_git("switch", "-q", "main", cwd=repo)
    assert head(repo) == base
    (repo / "docs").write_text("the person's own file called docs\n")
    with pytest.raises(GitError, match="untracked working tree files would be overwritten"):
        git.fast_forward_checkout(repo, landing)
    assert (repo / "docs").read_text() == "the person's own file called docs\n" and head(repo) == base
