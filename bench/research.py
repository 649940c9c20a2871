#!/usr/bin/env python3
"""Research benchmark: a hillclimb run on examples/microgpt, two experiments at a time.

    python bench/research.py                                  # ten minutes, 60 s of training each
    python bench/research.py --minutes 2 --train-seconds 20   # a quick look
    python bench/research.py --json                           # the figures as JSON on stdout

It copies examples/microgpt into a fresh repository in a temporary folder, declares the
hyperparameters in params.json as research parameters, and runs `ResearchLoop` with the
hillclimb agent (no model, nothing on the network). It prints the starting (baseline) and best
validation loss and the experiments per hour. No new round starts after --minutes; the round
under way finishes, so the run can take one experiment longer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

try:
    import clawfleet  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clawfleet import git
from clawfleet.project import Project
from clawfleet.research import ResearchLoop, results_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "microgpt"
BENCH_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                 "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}

CONFIG = """\
[research]
command = "python3 train.py"
workdir = "microgpt"
program = "microgpt/program.md"
metric_regex = "val_loss=([0-9.]+)"
goal = "minimize"
time_budget = {budget}
scope = ["microgpt/params.json"]
agent = "hillclimb"
parallel = {parallel}

[research.params.lr]
file = "microgpt/params.json"
min = 0.0003
max = 0.05
log = true
[research.params.batch_size]
file = "microgpt/params.json"
min = 1
max = 16
integer = true
[research.params.n_layer]
file = "microgpt/params.json"
min = 1
max = 3
integer = true
[research.params.n_head]
file = "microgpt/params.json"
min = 1
max = 4
integer = true
[research.params.head_dim]
file = "microgpt/params.json"
min = 4
max = 16
integer = true
[research.params.mlp_ratio]
file = "microgpt/params.json"
min = 1
max = 4
integer = true
[research.params.warmup_steps]
file = "microgpt/params.json"
min = 0
max = 100
integer = true
[research.params.init_std]
file = "microgpt/params.json"
min = 0.02
max = 0.5
log = true
"""


def make_lab(folder: Path, *, parallel: int, train_seconds: float) -> Project:
    repo = folder / "lab"
    files = {f"microgpt/{name}": (EXAMPLE / name).read_text()
             for name in ("train.py", "names.txt", "params.json", "program.md")}
    git.init_repo(repo, files)
    (repo / ".claw").mkdir()
    # Training stops at a CPU-time budget; the wall-clock budget leaves room for a busy machine
    # (other experiments, other programs) and the validation pass.
    (repo / ".claw" / "config.toml").write_text(CONFIG.format(budget=train_seconds * 5 + 60, parallel=parallel))
    return Project(repo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="start no new round after this (default 10)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--train-seconds", type=float, default=60.0, help="training time of one experiment")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    parser.add_argument("--dir", type=Path, help="where to make the temporary repository")
    args = parser.parse_args()
    os.environ.update(BENCH_GIT_ENV)
    os.environ["MICROGPT_SECONDS"] = f"{args.train_seconds:g}"
    folder = Path(tempfile.mkdtemp(prefix="claw-research-bench-", dir=args.dir))
    started = time.time()

    def show(experiment, best) -> None:
        if args.json:
            return
        metric = "-" if experiment.metric is None else f"{experiment.metric:.4f}"
        print(f"{time.time() - started:7.0f}s  #{experiment.id:<3} {experiment.status:<8} {metric:>8}  "
              f"{experiment.description[:80]}", flush=True)

    try:
        project = make_lab(folder, parallel=args.parallel, train_seconds=args.train_seconds)
        loop = ResearchLoop(project, hours=args.minutes / 60, seed=args.seed, on_experiment=show)
        run = loop.run()
        elapsed = time.time() - started
        experiments = [e for e in project.store.experiments(run_id=run.id) if e.round > 0]
        statuses = {}
        for experiment in experiments:
            statuses[str(experiment.status)] = statuses.get(str(experiment.status), 0) + 1
        figures = {
            "minutes": args.minutes, "parallel": args.parallel, "train_seconds": args.train_seconds,
            "wall_seconds": round(elapsed, 1), "start_val_loss": run.baseline_metric,
            "best_val_loss": run.best_metric, "experiments": len(experiments),
            "experiments_per_hour": round(len(experiments) / elapsed * 3600, 1), "outcomes": statuses,
            "best_params": json.loads(git.out("show", f"{run.best_commit}:microgpt/params.json", cwd=project.root)),
            "results": str(results_path(project, loop.config.name)) if args.keep else None,
        }
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print(textwrap.dedent(f"""
                research bench: hillclimb on examples/microgpt, parallel {args.parallel}, \
{args.train_seconds:g} s of training per experiment
                  wall time            {elapsed:.0f} s (no new round after {args.minutes:g} min)
                  start val_loss       {run.baseline_metric:.4f}
                  best val_loss        {run.best_metric:.4f}
                  experiments          {len(experiments)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})
                  experiments / hour   {len(experiments) / elapsed * 3600:.0f}
                  best params          {json.dumps(figures['best_params'])}""").strip())
            if args.keep:
                print(f"  repository           {project.root}  (claw research report there draws the plot)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
