#!/usr/bin/env python3
"""Workspace benchmark: from "task starts" to "agent starts", warm pool against cold setup.

    python bench/workspace.py            # 5 runs of each (about a minute)
    python bench/workspace.py --reps 3   # fewer
    python bench/workspace.py --json     # the figures as JSON
    python bench/workspace.py --strict   # exit status 1 when warm > 0.05 × cold

The repository's setup takes a few seconds, like a real one: `sleep 2` then an offline
`pip install --no-index --target .deps` of a local wheel named in requirements.txt. Its
untracked `.env` is copied into every workspace. Both cases run the real thing: one task through
`Orchestrator.run()` (no merge), a `command` agent that records the time its first line ran.

- cold: `pool_size = 0`. The attempt gets a fresh worktree; its runner runs the setup, then the agent.
- warm: `pool_size = 1`, the pool filled (worktree made and set up) before the task is added, as
  `claw run` keeps it filled in the background. The attempt takes the warm workspace onto its
  branch; the setup inputs did not change, so no setup runs.

Figure: median over the runs of (agent's first line − attempt `started_at`, the moment the
orchestrator creates the attempt). Target: warm <= 0.05 × cold. Runs alternate cold and warm so
drift on a shared machine hits both alike. Nothing touches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

try:
    import clawfleet  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clawfleet import git
from clawfleet.models import Importance
from clawfleet.orchestrator import Orchestrator
from clawfleet.project import Project, initialize
from clawfleet.workspace import WorkspacePool

BENCH_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                 "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
SETUP = ("sleep 2 && {python} -m pip install --quiet --disable-pip-version-check --no-index "
         "--find-links wheels --upgrade --target .deps -r requirements.txt")
TARGET = 0.05


def make_wheel(folder: Path) -> None:
    files = {"greet.py": "def hello():\n    return 'hello'\n",
             "greet-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: greet\nVersion: 1.0\n",
             "greet-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n"}
    files["greet-1.0.dist-info/RECORD"] = "".join(f"{p},,\n" for p in files) + "greet-1.0.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "greet-1.0-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def make_project(root: Path, name: str, pool_size: int, files: int) -> Project:
    repo = root / name
    sources = {f"src/mod{n:04d}.py": f"VALUE = {n}\n" for n in range(files)}
    git.init_repo(repo, {"README.md": "# bench\n", "requirements.txt": "greet==1.0\n",
                         ".gitignore": ".deps/\n", **sources}, message="bench: initial commit")
    make_wheel(repo / "wheels")
    git.git("add", "wheels", cwd=repo)
    git.git("commit", "--quiet", "-m", "bench: vendored wheel", cwd=repo, identity=True)
    (repo / ".env").write_text("SECRET=bench\n")
    initialize(repo)
    agent = root / f"agent-{name}.sh"
    agent.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        echo "$EPOCHREALTIME" > "{root}/started-{name}-$CLAW_ATTEMPT_ID"
        test -f .env && test -f .deps/greet.py || {{ echo "workspace not ready" >&2; exit 1; }}
        echo "work $CLAW_TASK_ID" > "work-$CLAW_TASK_ID.txt"
        """))
    agent.chmod(0o755)
    (repo / ".claw" / "config.toml").write_text(textwrap.dedent(f"""\
        [fleet]
        slots = 1
        default_agent = "stamp"
        attempt_timeout = 300
        max_attempts = 1
        pool_size = {pool_size}
        radar_interval = 0
        [review]
        auto_approve = ["low", "normal"]
        [workspace]
        include = [".env"]
        setup = [{json.dumps(SETUP.format(python=sys.executable))}]
        [agents.stamp]
        kind = "command"
        command = ["{agent}"]
        """))
    return Project(repo)


def one_run(root: Path, project: Project, name: str, number: int) -> dict[str, float]:
    """Run one task to its end; return where the time to the agent's start went (seconds)."""
    if project.config.fleet.pool_size:
        WorkspacePool(project).fill(project.target_tip())  # what `claw run` keeps done in the background
        time.sleep(1.0)  # filled ahead of use, not just now
    task = project.store.add_task(f"bench {name} {number}", importance=Importance.normal)
    Orchestrator(project, merge=False).run()
    attempt = project.store.latest_attempt(task.id)
    if attempt.state not in ("ready", "approved"):
        raise SystemExit(f"bench: the {name} attempt ended {attempt.state}: {attempt.reason}")
    agent_start = float((root / f"started-{name}-{attempt.id}").read_text().replace(",", "."))
    attempt_dir = project.attempt_dir(attempt.id)
    runner_up = (attempt_dir / "runner.pid").stat().st_mtime
    setup_log = attempt_dir / "setup.log"
    return {"to_agent": agent_start - attempt.started_at,
            "to_runner": runner_up - attempt.started_at,
            "setup_ran": setup_log.exists()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--files", type=int, default=2000, help="tracked files in the repository")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    os.environ.update(BENCH_GIT_ENV)
    root = Path(tempfile.mkdtemp(prefix="claw-bench-workspace-"))
    try:
        cold_project = make_project(root, "cold", pool_size=0, files=args.files)
        warm_project = make_project(root, "warm", pool_size=1, files=args.files)
        runs: dict[str, list[dict]] = {"cold": [], "warm": []}
        for number in range(args.reps):
            order = [("cold", cold_project), ("warm", warm_project)]
            for name, project in (order if number % 2 == 0 else order[::-1]):
                runs[name].append(one_run(root, project, name, number))
                if not args.json:
                    last = runs[name][-1]
                    print(f"  {name} run {number + 1}: agent started after {last['to_agent'] * 1000:.0f} ms"
                          f" (runner up at {last['to_runner'] * 1000:.0f} ms, setup "
                          f"{'ran' if last['setup_ran'] else 'skipped'})", file=sys.stderr)
        cold = statistics.median(r["to_agent"] for r in runs["cold"])
        warm = statistics.median(r["to_agent"] for r in runs["warm"])
        ratio = warm / cold
        result = {"cold_s": round(cold, 4), "warm_s": round(warm, 4), "ratio": round(ratio, 4),
                  "target": f"<= {TARGET}", "passed": ratio <= TARGET,
                  "warm_runner_up_s": round(statistics.median(r["to_runner"] for r in runs["warm"]), 4),
                  "cold_setup_ran": all(r["setup_ran"] for r in runs["cold"]),
                  "warm_setup_ran": any(r["setup_ran"] for r in runs["warm"]),
                  "reps": args.reps, "files": args.files, "runs": runs}
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"task start -> agent start, median of {args.reps} ({args.files} files, setup: sleep 2 + "
                  "pip install --no-index)")
            print(f"  cold worktree + setup : {cold * 1000:8.0f} ms")
            print(f"  warm pool             : {warm * 1000:8.0f} ms "
                  f"(the runner process was up after {result['warm_runner_up_s'] * 1000:.0f} ms)")
            print(f"  ratio warm/cold       : {ratio:8.3f}  target <= {TARGET}  "
                  + ("PASS" if result["passed"] else "MISS"))
        return 1 if args.strict and not result["passed"] else 0
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
