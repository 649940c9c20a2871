"""Workspaces: one git worktree per attempt, handed out from a pool of ready ones.

A pooled worktree is already checked out (detached) at a recent target commit, so starting an
attempt is a `git switch -c` that touches only the files that differ, not a full checkout.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from . import git
from .errors import ClawError
from .project import Project

POOL_PREFIX = "pool-"
STAGING_PREFIX = "staging-"


class WorkspacePool:
    def __init__(self, project: Project, size: int | None = None) -> None:
        self.project = project
        self.size = project.config.fleet.pool_size if size is None else size
        self.dir = project.worktrees_dir
        self._known_full = False

    def ready(self) -> list[Path]:
        """Pooled worktrees that git knows about (a folder git forgot is not usable)."""
        known = {info.path.resolve() for info in git.worktrees(self.project.root)}
        if not self.dir.exists():
            return []
        return sorted(p for p in self.dir.iterdir()
                      if p.name.startswith(POOL_PREFIX) and p.resolve() in known)

    def fill(self, commit: str, at_most: int | None = None) -> int:
        """Make pooled worktrees at `commit` until the pool is full; return how many were made."""
        if self._known_full:
            return 0  # nothing was taken since we last counted: spare the `git worktree list`
        made, have = 0, len(self.ready())
        while have < self.size and (at_most is None or made < at_most):
            self._make(commit)
            made += 1
            have += 1
        self._known_full = have >= self.size
        return made

    def _make(self, commit: str) -> Path:
        # Check out under a staging name nobody claims, then rename it into the pool: the slow
        # checkout runs without the repository lock, so attempts keep starting meanwhile.
        self.dir.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:10]
        staging, path = self.dir / f"{STAGING_PREFIX}{name}", self.dir / f"{POOL_PREFIX}{name}"
        git.add_detached_worktree(self.project.root, staging, commit, lock=False)
        with git.repo_lock(self.project.root):
            git.git("worktree", "move", str(staging), str(path), cwd=self.project.root)
        return path

    def acquire(self, name: str, branch: str, base: str) -> Path:
        """A worktree named `name` on a new `branch` at `base`: from the pool when one is ready."""
        target = self.dir / name
        self._known_full = False
        if target.exists():
            raise ClawError(f"the workspace {target} already exists",
                            hint="a stale worktree from an earlier run; `git worktree remove --force` "
                                 "it (its branch keeps any commits)")
        for pooled in self.ready():
            claimed = self._claim(pooled, target)
            if claimed:
                git.start_branch(target, branch, base)
                return target
        self.dir.mkdir(parents=True, exist_ok=True)
        git.add_detached_worktree(self.project.root, target, base)
        git.start_branch(target, branch, base)
        return target

    def _claim(self, pooled: Path, target: Path) -> bool:
        # `git worktree move` both renames the folder and fixes git's records; it fails if
        # another process claimed this one first, and then we try the next.
        with git.repo_lock(self.project.root):
            if not pooled.exists():
                return False
            result = git.git("worktree", "move", str(pooled), str(target),
                             cwd=self.project.root, check=False)
            return result.returncode == 0

    def release(self, worktree: Path, recycle_at: str | None = None) -> None:
        """Give a finished attempt's worktree back to the pool (clean) or remove it."""
        if not worktree.exists():
            git.git("worktree", "prune", cwd=self.project.root, check=False)
            return
        if recycle_at and len(self.ready()) < self.size:
            try:
                git.reset_worktree(worktree, recycle_at)
                pooled = self.dir / f"{POOL_PREFIX}{uuid.uuid4().hex[:10]}"
                with git.repo_lock(self.project.root):
                    git.git("worktree", "move", str(worktree), str(pooled), cwd=self.project.root)
                return
            except git.GitError:
                pass
        git.remove_worktree(self.project.root, worktree)


def attempt_worktree_name(attempt_id: int) -> str:
    return f"attempt-{attempt_id}"

