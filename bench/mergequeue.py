#!/usr/bin/env python3
"""Merge-queue benchmark: batched landing against one by one, and the conflict radar's cost.

    python bench/mergequeue.py            # 40 attempts, 1 s check; radar on 10,000 files
    python bench/mergequeue.py --quick    # 12 attempts, 0.3 s check; radar on 2,000 files
    python bench/mergequeue.py --json

1. landing: 40 approved, non-conflicting attempts (each adds its own file) landed with a check
   that takes 1 s, by `MergeQueue.land_all()` with `batch_size = 1` and with `batch_size = 8`,
   on identical repositories made in the same run. Target: batched / one-by-one <= 0.25.
2. radar: on a repository of 10,000 files, the cost of one `git merge-tree` prediction for a
   pair of branches, and of snapshotting one live worktree (temporary index, `git add -A`).

Real git, real SQLite, real check processes; no network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import clawfleet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clawfleet import git
from clawfleet.mergequeue import MergeQueue
from clawfleet.models import AttemptState, TaskState
from clawfleet.project import Project, initialize

os.environ.update({"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                   "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})


def approved_attempts(root: Path, count: int, check_seconds: float, batch_size: int) -> Project:
    """A repository with `count` approved attempts, each on its own branch adding its own file."""
    git.init_repo(root, {"README.md": "# bench\n"})
    initialize(root)
    (root / ".claw" / "config.toml").write_text(
        f'[checks]\ncommands = ["sleep {check_seconds}"]\n[merge]\nbatch_size = {batch_size}\n')
    project = Project(root)
    base = git.branch_tip(root, "main")
    scratch = root.parent / f"{root.name}-scratch"
    git.add_detached_worktree(root, scratch, base)
    for number in range(1, count + 1):
        task = project.store.add_task(f"change {number}")
        attempt = project.store.start_attempt(task.id, agent="bench", base_commit=base,
                                              branch_for=lambda n, i=task.id: f"claw/{i}-bench")
        git.git("switch", "--quiet", "--detach", "--discard-changes", base, cwd=scratch)
        (scratch / f"change-{number}.txt").write_text(f"change {number}\n")
        head = git.commit_all(scratch, f"change {number}")
        git.git("branch", attempt.branch, head, cwd=root)
        project.store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready",
                                     task_state=TaskState.approved, head_commit=head, checks_passed=True)
        project.store.finish_attempt(attempt.id, AttemptState.approved, "attempt.approved")
    git.remove_worktree(root, scratch)
    return project


def time_landing(workdir: Path, count: int, check_seconds: float, batch_size: int) -> tuple[float, int]:
    project = approved_attempts(workdir / f"batch{batch_size}", count, check_seconds, batch_size)
    started = time.perf_counter()
    results = MergeQueue(project).land_all()
    elapsed = time.perf_counter() - started
    landed = sum(r.outcome == "merged" for r in results)
    assert landed == count, f"only {landed} of {count} landed: {[r.reason for r in results if r.reason]}"
    return elapsed, landed


def radar_cost(workdir: Path, files: int, reps: int) -> dict[str, float]:
    root = workdir / "radar"
    folders = max(1, files // 100)
    git.init_repo(root, {f"d{f}/file{i}.txt": f"{f}-{i}\n" for f in range(folders) for i in range(100)})
    base = git.branch_tip(root, "main")
    heads = []
    for side in ("a", "b"):
        worktree = workdir / f"radar-{side}"
        git.add_detached_worktree(root, worktree, base)
        (worktree / "d0" / "file0.txt").write_text(f"edited by {side}\n")   # a real conflict
        (worktree / f"new-{side}.txt").write_text(side)
        heads.append(git.commit_all(worktree, f"side {side}"))
    (workdir / "radar-a" / "d1" / "file1.txt").write_text("uncommitted edit\n")
    pair, snapshot = [], []
    for _ in range(reps):
        started = time.perf_counter()
        conflicts = git.merge_conflicts(root, heads[0], heads[1])
        pair.append(time.perf_counter() - started)
        assert conflicts == ["d0/file0.txt"], conflicts
        started = time.perf_counter()
        git.snapshot_commit(workdir / "radar-a")
        snapshot.append(time.perf_counter() - started)
    return {"pair_ms": statistics.median(pair) * 1000, "snapshot_ms": statistics.median(snapshot) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version, for a smoke check")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    count, check, batch, files, reps = (12, 0.3, 4, 2_000, 3) if args.quick else (40, 1.0, 8, 10_000, 5)
    workdir = Path(tempfile.mkdtemp(prefix="claw-bench-mq-"))
    try:
        one_by_one, _ = time_landing(workdir, count, check, 1)
        batched, _ = time_landing(workdir, count, check, batch)
        radar = radar_cost(workdir, files, reps)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = batched / one_by_one
    figures = {
        "attempts": count, "check_seconds": check, "batch_size": batch,
        "one_by_one_s": round(one_by_one, 2), "batched_s": round(batched, 2),
        "batched_over_one_by_one": round(ratio, 3), "target": "<= 0.25", "passed": ratio <= 0.25,
        "radar_files": files, "radar_pair_ms": round(radar["pair_ms"], 1),
        "radar_snapshot_ms": round(radar["snapshot_ms"], 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"landing {count} approved attempts with a {check:g} s check:")
    print(f"  one by one        {one_by_one:7.2f} s")
    print(f"  batches of {batch:<3}    {batched:7.2f} s")
    print(f"  ratio             {ratio:7.3f}   (target <= 0.25: {'PASS' if ratio <= 0.25 else 'MISS'})")
    print(f"conflict radar on {files:,} files:")
    print(f"  merge-tree per branch pair   {radar['pair_ms']:6.1f} ms (median of {reps})")
    print(f"  snapshot of a live worktree  {radar['snapshot_ms']:6.1f} ms (median of {reps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
