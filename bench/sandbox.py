"""What the sandbox costs: an agent's start and a check's run, sandboxed against unsandboxed,
measured in the same run on this machine.

    python bench/sandbox.py [--runs 30]

"start" is `true` started the way an agent CLI is: through `containment.contain` with its
routes out (the loopback relay to a gateway port, egress sockets outside); "check" is a
`bash -c` check command with the attempt's git dir and HOME hidden. Prints medians and the
added milliseconds (target: at most 50 ms added per start).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clawfleet import git, sandbox  # noqa: E402
from clawfleet.containment import Reach, contain  # noqa: E402


def timed(policy, args, reach, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with contain(policy, args, os.environ, reach) as (command, env):
            subprocess.run(command, cwd=reach.worktree, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    bwrap, why = sandbox.probe()
    if bwrap is None:
        sys.exit(f"no working bubblewrap here: {why}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "repo"
        git.init_repo(root, {"a.txt": "1\n"})
        worktree = root / ".claw/run/worktrees/w1"
        worktree.parent.mkdir(parents=True)
        git.add_worktree_on_branch(root, worktree, "claw/1-bench", "main")
        attempt = root / ".claw/run/attempts/1"
        git_dir = attempt / "git"
        git.refresh_agent_git_dir(worktree, git.admin_dir(worktree), root / ".git", git_dir, "claw/1-bench")
        policy = sandbox.SandboxPolicy(bwrap)
        agent = Reach(worktree=worktree, project_root=root, common_dir=root / ".git",
                      private=[attempt / "home", attempt / "outbox"], urls=["http://127.0.0.1:9/v1"],
                      git_dir=git_dir)
        check = Reach(worktree=worktree, project_root=root, common_dir=root / ".git", git_dir=git_dir)
        rows = []
        for name, args, reach in (("agent start", ["true"], agent),
                                  ("check run", ["bash", "-c", "git status --short >/dev/null"], check)):
            bare = statistics.median(timed(None, args, reach, runs))
            boxed = statistics.median(timed(policy, args, reach, runs))
            rows.append((name, bare, boxed))
    print(f"{'':12} {'unsandboxed':>12} {'sandboxed':>10} {'added':>8} {'ratio':>6}   ({runs} runs, medians, ms)")
    for name, bare, boxed in rows:
        print(f"{name:12} {bare:12.1f} {boxed:10.1f} {boxed - bare:8.1f} {boxed / bare:6.2f}")


if __name__ == "__main__":
    main()
