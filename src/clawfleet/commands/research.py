"""`claw research`: experiment loops that keep a change only when the metric improves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..printable import escape
from ._common import JsonOption, ago, console, open_project, print_json

app = typer.Typer(no_args_is_help=True, help="Research mode: an agent changes the code, the experiment runs "
                  "for a fixed time, the metric decides keep or discard, and the loop goes on.")

STATUS_STYLE = {"keep": "green", "baseline": "blue", "discard": "dim", "crash": "red", "timeout": "red",
                "running": "cyan"}


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Folder of the research (program.md goes here; the command runs here).")] = Path("."),
    command: Annotated[str, typer.Option(help="The command that runs one experiment (bash, in FOLDER).")] = "python3 train.py",
    metric_regex: Annotated[Optional[str], typer.Option(help="Regex whose first group (or whole match) in the output is the metric.")] = None,
    metric_key: Annotated[Optional[str], typer.Option(help="Dotted key of the metric in the output's last JSON line.")] = None,
    maximize: Annotated[bool, typer.Option("--maximize/--minimize", help="Whether a higher metric is better.")] = False,
    time_budget: Annotated[float, typer.Option(help="Seconds one experiment may run before it is killed.")] = 300.0,
    scope: Annotated[Optional[list[str]], typer.Option(help="Glob of files the agent may change (repeat it); default: FOLDER/**.")] = None,
    name: Annotated[str, typer.Option(help="Research name: the branch is claw/research/NAME.")] = "default",
) -> None:
    """Write FOLDER/program.md (the agent's instructions) and the research section of .claw/config.toml."""
    from ..research import initialize_research

    written = initialize_research(Path.cwd(), folder, command=command, metric_regex=metric_regex,
                                  metric_key=metric_key, goal="maximize" if maximize else "minimize",
                                  time_budget=time_budget, scope=scope or [], name=name)
    for item in written:
        console.print(f"wrote {escape(item)}")
    console.print("next: edit program.md (the goal, the ideas) and the research section of .claw/config.toml, "
                  "then `claw research run`")


@app.command()
def run(
    parallel: Annotated[Optional[int], typer.Option(min=1, max=64, help="Experiments at once, each from the best commit (default: research.parallel).")] = None,
    hours: Annotated[Optional[float], typer.Option(help="Start no new round after this many hours (default: until Ctrl-C).")] = None,
    max_experiments: Annotated[Optional[int], typer.Option(help="Stop after this many experiments (the baseline not counted).")] = None,
    agent: Annotated[Optional[str], typer.Option(help="hillclimb (no model), or an agent under [agents] (default: research.agent).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed of the hillclimb agent.")] = None,
) -> None:
    """Run experiments until --hours, --max-experiments or Ctrl-C; each line is one outcome."""
    from ..research import ResearchLoop, results_path

    project = open_project()
    started = time.time()

    def on_experiment(experiment, best) -> None:
        style = STATUS_STYLE.get(str(experiment.status), "")
        metric = "-" if experiment.metric is None else f"{experiment.metric:.6g}"
        line = (f"{ago(time.time() - started):>6}  #{experiment.id:<4} [{style}]{experiment.status:<8}[/] "
                f"{metric:>10}  {escape(experiment.description[:70])}")
        if experiment.status not in ("keep", "baseline") and experiment.reason:
            line += f"  [dim]({escape(experiment.reason[:90])})[/]"
        console.print(line)

    loop = ResearchLoop(project, agent=agent, parallel=parallel, hours=hours, max_experiments=max_experiments,
                        seed=seed, on_experiment=on_experiment)
    console.print(f"research on {loop.branch}: agent {loop.agent_name}, {loop.parallel} at once, "
                  f"{loop.config.time_budget:g} s per experiment; Ctrl-C stops")
    result = loop.run()
    experiments = [e for e in project.store.experiments(run_id=result.id) if e.round > 0]
    kept = sum(1 for e in experiments if e.status == "keep")
    elapsed = max(time.time() - started, 1e-9)
    console.print(f"{result.state} after {ago(elapsed)}: {len(experiments)} experiments "
                  f"({len(experiments) / elapsed * 3600:.0f}/hour), {kept} kept; metric "
                  f"{_metric(result.baseline_metric)} -> {_metric(result.best_metric)} at "
                  f"{(result.best_commit or '')[:12]}")
    console.print(f"results: {results_path(project, loop.config.name)}  (`claw research report` plots them)")


@app.command()
def report(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="PNG to write (default: next to results.tsv).")] = None,
    top: Annotated[int, typer.Option(min=1, help="How many of the best changes to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Plot every experiment's metric (kept ones marked, the running best) and list the best changes."""
    from ..research import branch_for, research_config, research_dir
    from ..research_report import draw, improvements

    project = open_project()
    config = research_config(project)
    experiments = project.store.experiments(name=config.name)
    path = draw(experiments, config.goal, output or research_dir(project, config.name) / "report.png",
                title=f"{branch_for(config.name)}: {config.goal} the metric")
    best = improvements(experiments, config.goal)[:top]
    if as_json:
        print_json({"plot": str(path), "experiments": len(experiments),
                    "best_changes": [{"experiment": i.experiment.id, "commit": i.experiment.commit_sha,
                                      "metric": i.experiment.metric, "before": i.before, "gain": i.gain,
                                      "description": i.experiment.description} for i in best]})
        return
    console.print(f"plot: {path}  ({len(experiments)} experiments)")
    if not best:
        console.print("no change has beaten the baseline yet")
    for item in best:
        console.print(f"  #{item.experiment.id:<4} {(item.experiment.commit_sha or '')[:10]}  "
                      f"{item.before:.6g} -> {item.experiment.metric:.6g} ([green]{item.gain:+.4g}[/])  "
                      f"{escape(item.experiment.description)}")


@app.command()
def status(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every two seconds until Ctrl-C.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Where the research loop stands: its run, best metric, running and recent experiments."""
    from ..research import status_summary

    project = open_project()
    if as_json:
        print_json(status_summary(project))
        return
    if not watch:
        console.print(_status_view(status_summary(project)))
        return
    from rich.live import Live
    with Live(console=console, refresh_per_second=1) as live:
        try:
            while True:
                live.update(_status_view(status_summary(project)))
                time.sleep(2)
        except KeyboardInterrupt:
            pass


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _status_view(summary: dict):
    from rich.console import Group
    from rich.table import Table

    run = summary["run"]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items())) or "none yet"
    lines = [(f"research {escape(summary['name'])} on {summary['branch']} ({summary['goal']}), "
              f"best commit {(summary['best_commit'] or '-')[:12]}; all experiments: {counts}")]
    if run is None:
        lines.append("no run yet: `claw research run`")
        return Group(*lines)
    state = run["state"]
    lines.append(f"run {run['id']}: [{'cyan' if state == 'running' else 'bold'}]{state}[/] for "
                 f"{ago(run['elapsed_s'])}, agent {escape(run['agent'])}, {run['parallel']} at once, "
                 f"{run['experiments']} experiments ({run['experiments_per_hour']:.0f}/hour); metric "
                 f"{_metric(run['baseline_metric'])} -> {_metric(run['best_metric'])}"
                 + (f"; metered {run['metered_tokens']:,} tokens, ${run['cost']:.4f}" if run["metered_tokens"] else "")
                 + (f"  [dim]({escape(run['reason'])})[/]" if run["reason"] else ""))
    for item in summary["running"]:
        lines.append(f"  running #{item['id']} (round {item['round']}) for {ago(item['since_s'])}")
    if summary["recent"]:
        table = Table(box=None, pad_edge=False)
        for column in ("id", "status", "metric", "hypothesis", "why"):
            table.add_column(column)
        for item in summary["recent"]:
            style = STATUS_STYLE.get(item["status"], "")
            table.add_row(str(item["id"]), f"[{style}]{item['status']}[/]", _metric(item["metric"]),
                          escape(item["description"][:60]), escape((item["reason"] or "")[:60]))
        lines.append(table)
    lines.append(f"results: {summary['results']}")
    return Group(*lines)
