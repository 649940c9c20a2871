"""The worktree pool: fill, acquire (pooled or fresh), release (recycled clean or removed)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.errors import ClawError
from clawfleet.workspace import PREFIX, WorkspacePool


def run_git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def head(cwd: Path) -> str:
    return run_git("rev-parse", "HEAD", cwd=cwd).strip()


def branch_of(worktree: Path) -> str | None:
    result = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=worktree,
                            capture_output=True, text=True)
    return result.stdout.strip() or None


def listed_worktrees(repo: Path) -> dict[Path, dict[str, str]]:
    """`git worktree list --porcelain` as {path: attributes}, without the main checkout."""
    found, current = {}, {}
    for line in run_git("worktree", "list", "--porcelain", cwd=repo).splitlines() + [""]:
        if not line:
            if current:
                found[Path(current["worktree"]).resolve()] = current
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value
    found.pop(repo.resolve())
    return found


def assert_consistent(repo: Path, pool: WorkspacePool) -> None:
    """Every worktree git knows exists on disk, and every folder in the pool dir is one git knows."""
    listed = listed_worktrees(repo)
    for path, attributes in listed.items():
        assert path.is_dir(), path
        assert "prunable" not in attributes, attributes
    on_disk = {p.resolve() for p in pool.dir.iterdir()} if pool.dir.exists() else set()
    assert on_disk == set(listed)


def second_commit(repo: Path) -> str:
    (repo / "app.txt").write_text("two\n")
    (repo / "new.txt").write_text("new\n")
    run_git("add", "-A", cwd=repo)
    run_git("commit", "-q", "-m", "second", cwd=repo)
    return head(repo)


def test_fill_makes_detached_pool_worktrees(project):
    pool = WorkspacePool(project, size=2)
    base = head(project.root)
    assert pool.fill(base) == 2
    ready = [w.path for w in pool.ready()]
    assert len(ready) == 2 and all(p.name.startswith(PREFIX) for p in ready)
    for path in ready:
        assert head(path) == base and branch_of(path) is None
        assert (path / "app.txt").read_text() == "one\n"
    assert pool.fill(base) == 0  # already full
    assert_consistent(project.root, pool)


def test_acquire_takes_a_pooled_worktree(project):
    repo = project.root
    pool = WorkspacePool(project, size=2)
    pool.fill(head(repo))
    pooled = {w.path for w in pool.ready()}
    base = second_commit(repo)  # the target moved on since the pool was filled

    path = pool.acquire(1, "claw/1-first", base).path
    assert path in pooled and path.is_dir()
    assert len(pool.ready()) == 1 and {w.path for w in pool.ready()} == pooled - {path}
    assert branch_of(path) == "claw/1-first"
    assert head(path) == base and git.branch_tip(repo, "claw/1-first") == base
    assert (path / "app.txt").read_text() == "two\n" and (path / "new.txt").exists()
    assert run_git("status", "--porcelain", cwd=path) == ""
    assert listed_worktrees(repo)[path.resolve()]["branch"] == "refs/heads/claw/1-first"
    assert_consistent(repo, pool)


def test_acquire_makes_a_fresh_worktree_when_the_pool_is_empty(project):
    repo = project.root
    pool = WorkspacePool(project, size=1)
    pool.fill(head(repo))
    base = second_commit(repo)
    first = pool.acquire(1, "claw/1-a", base).path
    assert pool.ready() == []
    second = pool.acquire(2, "claw/2-b", base).path
    assert second.parent == pool.dir and first != second
    assert branch_of(second) == "claw/2-b" and head(second) == base
    assert (second / "new.txt").read_text() == "new\n"
    assert_consistent(repo, pool)


def test_concurrent_acquires_never_share_a_worktree(project):
    repo = project.root
    pool = WorkspacePool(project, size=2)
    base = head(repo)
    pool.fill(base)
    names = list(range(1, 5))
    barrier = threading.Barrier(len(names))
    got: dict[str, Path] = {}
    errors: list[BaseException] = []

    def take(name: str) -> None:
        barrier.wait()
        try:
            got[name] = pool.acquire(name, f"claw/{name}", base).path
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=take, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(got) == names and len(set(got.values())) == len(names)
    for name, path in got.items():
        assert branch_of(path) == f"claw/{name}"
    assert pool.ready() == []
    assert_consistent(repo, pool)


def test_release_recycles_a_clean_detached_worktree(project):
    repo = project.root
    pool = WorkspacePool(project, size=1)
    base = head(repo)
    path = pool.acquire(1, "claw/1-dirty", base).path
    (path / "app.txt").write_text("modified\n")
    (path / "untracked.txt").write_text("junk\n")
    (path / "build").mkdir()
    (path / "build" / "out.o").write_text("object\n")
    (path / ".gitignore").write_text("*.o\n")
    run_git("add", "app.txt", cwd=path)
    run_git("commit", "-q", "-m", "attempt work", cwd=path)
    (path / "README.md").write_text("uncommitted edit\n")
    tip = second_commit(repo)

    pool.release(path, recycle_at=tip)
    [workspace] = pool.ready()
    recycled = workspace.path
    assert recycled == path  # a workspace keeps its path for life: installs hold absolute paths
    assert branch_of(recycled) is None and head(recycled) == tip
    assert run_git("status", "--porcelain", "--ignored", "--untracked-files=all", cwd=recycled) == ""
    assert not (recycled / "untracked.txt").exists() and not (recycled / "build").exists()
    assert (recycled / "app.txt").read_text() == "two\n"
    # The attempt's branch keeps its work; only the worktree went back to the pool.
    assert git.out("show", "claw/1-dirty:app.txt", cwd=repo) == "modified"
    # And the recycled worktree is handed out again.
    again = pool.acquire(2, "claw/2-next", tip).path
    assert pool.ready() == [] and branch_of(again) == "claw/2-next"
    assert_consistent(repo, pool)


def test_release_removes_a_nested_repository_an_agent_left(project):
    repo = project.root
    pool = WorkspacePool(project, size=1)
    path = pool.acquire(1, "claw/1-vendor", head(repo)).path
    vendored = path / "vendor" / "lib"
    git.init_repo(vendored, {"lib.py": "x = 1\n"})  # e.g. an agent ran `git clone`
    pool.release(path, recycle_at=head(repo))
    [workspace] = pool.ready()
    recycled = workspace.path
    assert not (recycled / "vendor").exists()
    assert run_git("status", "--porcelain", "--ignored", "--untracked-files=all", cwd=recycled) == ""


def test_release_without_room_removes_the_worktree(project):
    repo = project.root
    pool = WorkspacePool(project, size=1)
    base = head(repo)
    path = pool.acquire(1, "claw/1-a", base).path
    pool.fill(base)  # the pool is full again
    (path / "scratch.txt").write_text("x\n")
    pool.release(path, recycle_at=base)
    assert not path.exists()
    assert path.resolve() not in listed_worktrees(repo)
    assert len(pool.ready()) == 1
    assert git.branch_tip(repo, "claw/1-a") == base  # the branch is not the pool's to delete
    assert_consistent(repo, pool)


def test_release_without_recycle_removes_the_worktree(project):
    repo = project.root
    pool = WorkspacePool(project, size=2)
    path = pool.acquire(1, "claw/1-a", head(repo)).path
    pool.release(path)
    assert not path.exists() and pool.ready() == []
    assert listed_worktrees(repo) == {}
    assert_consistent(repo, pool)


def test_release_of_a_vanished_worktree_prunes_git_records(project):
    repo = project.root
    pool = WorkspacePool(project, size=2)
    path = pool.acquire(1, "claw/1-a", head(repo)).path
    subprocess.run(["rm", "-rf", str(path)], check=True)  # someone deleted the folder by hand
    pool.release(path, recycle_at=head(repo))
    assert listed_worktrees(repo) == {}
    assert pool.ready() == []
