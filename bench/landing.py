#!/usr/bin/env python3
"""Landing benchmark: batched against one by one, and whether every landed commit is green.

    python bench/landing.py            # 40 attempts (8 with a fix round, 2 that break main), 1 s check
    python bench/landing.py --quick    # 12 attempts (2 with a fix round, 1 that breaks main), 0.3 s check
    python bench/landing.py --json

A real Python project: `check_all.py` imports every `mods/mod_N.py` and calls its `check()`;
the checks are `sleep S` then that script. Each approved attempt adds its own module and passed
the checks at its head. Every fifth needed a fix round: two commits, the first red (its
`check()` fails). Two call `api.old_name()`, green on their base, red after a person's commit on
main renames it: they break main and must be bisected out.

Arms, on identical repositories made in the same run, all with `MergeQueue.land_all()`:
one by one (`batch_size = 1`), batched (`batch_size = K`), and batched with `squash = false`
(the fix-round attempts' own commits, each checked: they are refused). After each arm, every
commit that landed is checked out on its own and the check run there: the count of red ones
is the figure that must be 0. Sandbox off (this measures the queue, not bubblewrap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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

CHECK_ALL = """\
import importlib, pathlib, sys
sys.path.insert(0, ".")
red = [p.stem for p in sorted(pathlib.Path("mods").glob("mod_*.py"))
       if not importlib.import_module("mods." + p.stem).check()]
print("red:", red)
sys.exit(1 if red else 0)
"""
GREEN = "def check():\n    return {n} > 0\n"
RED = "def check():\n    return False  # fixed in the fix round\n"
BREAKS = "import api\n\n\ndef check():\n    return api.old_name() == {n}\n"


def make_project(root: Path, count: int, check_seconds: float, batch_size: int, squash: bool,
                 fix_rounds: set[int], breakers: set[int]) -> Project:
    git.init_repo(root, {"README.md": "# bench\n", "check_all.py": CHECK_ALL, "mods/__init__.py": "",
                         "api.py": "def old_name():\n    return 1\n"})
    initialize(root)
    check = f"{sys.executable} check_all.py"
    (root / ".claw" / "config.toml").write_text(
        f'[checks]\ncommands = ["sleep {check_seconds} && {check}"]\n'
        f"[merge]\nbatch_size = {batch_size}\nsquash = {str(squash).lower()}\n[sandbox]\nenabled = false\n")
    project = Project(root)
    base = git.branch_tip(root, "main")
    scratch = root.parent / f"{root.name}-scratch"
    git.add_detached_worktree(root, scratch, base)
    for number in range(1, count + 1):
        task = project.store.add_task(f"module {number}")
        attempt = project.store.start_attempt(task.id, agent="builtin", base_commit=base,
                                              branch_for=lambda n, i=task.id: f"claw/{i}-bench")
        git.git("switch", "--quiet", "--detach", "--discard-changes", base, cwd=scratch)
        module = scratch / "mods" / f"mod_{number}.py"
        if number in fix_rounds:
            module.write_text(RED)
            git.commit_all(scratch, f"module {number} (round 1)")
        module.write_text((BREAKS if number in breakers else GREEN).format(n=number if number not in breakers else 1))
        head = git.commit_all(scratch, f"module {number}")
        git.git("branch", attempt.branch, head, cwd=root)
        project.store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready", task_state=TaskState.approved,
                                     head_commit=head, checks_passed=True, summary=f"adds mods/mod_{number}.py")
        project.store.finish_attempt(attempt.id, AttemptState.approved, "attempt.approved")
    git.remove_worktree(root, scratch)
    # A person's commit after the attempts started: the two breakers' call is gone.
    (root / "api.py").write_text("def new_name():\n    return 1\n")
    git.git("commit", "--quiet", "-am", "rename old_name to new_name", cwd=root)
    return project


def red_commits(root: Path, since: str) -> int:
    """Landed commits whose check fails when each is checked out on its own."""
    scratch = root.parent / f"{root.name}-one-by-one"
    git.add_detached_worktree(root, scratch, since, lock=False)
    red = 0
    for commit in git.commits_between(root, since, "main"):
        git.git("switch", "--quiet", "--detach", "--discard-changes", commit, cwd=scratch)
        red += subprocess.run([sys.executable, "check_all.py"], cwd=scratch, capture_output=True).returncode != 0
    git.remove_worktree(root, scratch)
    return red


def arm(workdir: Path, name: str, count: int, check_seconds: float, batch_size: int, squash: bool,
        fix_rounds: set[int], breakers: set[int]) -> dict:
    project = make_project(workdir / name, count, check_seconds, batch_size, squash, fix_rounds, breakers)
    since = git.branch_tip(project.root, "main")
    started = time.perf_counter()
    results = MergeQueue(project).land_all()
    elapsed = time.perf_counter() - started
    bounced = sorted(r.task_id for r in results if r.outcome == "bounced")
    return {"seconds": round(elapsed, 2), "landed": sum(r.outcome == "merged" for r in results),
            "bounced": bounced, "commits": len(git.commits_between(project.root, since, "main")),
            "red_commits": red_commits(project.root, since),
            "check_runs": len(list((project.root / ".claw/run/attempts").glob("*/checks/merge-batch*")))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version, for a smoke check")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    count, check, batch = (12, 0.3, 4) if args.quick else (40, 1.0, 8)
    fix_rounds = set(range(5, count + 1, 5))
    breakers = {7} if args.quick else {13, 27}
    workdir = Path(tempfile.mkdtemp(prefix="claw-bench-landing-"))
    try:
        arms = {name: arm(workdir, name, count, check, size, squash, fix_rounds, breakers)
                for name, size, squash in (("one_by_one", 1, True), ("batched", batch, True),
                                           ("batched_no_squash", batch, False))}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = arms["batched"]["seconds"] / arms["one_by_one"]["seconds"]
    red = sum(a["red_commits"] for a in arms.values())
    figures = {"attempts": count, "fix_rounds": len(fix_rounds), "break_main": len(breakers),
               "check_seconds": check, "batch_size": batch, **arms,
               "batched_over_one_by_one": round(ratio, 3), "red_commits_target": 0, "passed": red == 0}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"landing {count} approved attempts ({len(fix_rounds)} needed a fix round, {len(breakers)} "
          f"break main) with a {check:g} s check:")
    for name, figure in arms.items():
        print(f"  {name:<18} {figure['seconds']:7.2f} s  {figure['landed']:3} landed in {figure['commits']:3} "
              f"commits, bounced {figure['bounced']}, {figure['check_runs']} check runs, "
              f"red commits checked one by one: {figure['red_commits']}")
    print(f"  batched / one by one  {ratio:.3f}")
    print(f"  red landed commits    {red}   (target 0: {'PASS' if red == 0 else 'MISS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
