"""The research report: a plot of every experiment's metric and the changes that helped most.

matplotlib is an optional extra (`pip install 'clawfleet[research]'`); it is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ClawError
from .models import Experiment, ExperimentStatus

_FAILED = (ExperimentStatus.crash, ExperimentStatus.timeout)


@dataclass
class Improvement:
    experiment: Experiment
    before: float            # the best metric it was measured against
    gain: float              # how much better, in the goal's direction


def improvements(experiments: list[Experiment], goal: str) -> list[Improvement]:
    """Every kept change and what it gained over the best before it, largest gain first."""
    found, best = [], None
    for experiment in experiments:
        if experiment.status == ExperimentStatus.baseline:
            best = experiment.metric
        elif experiment.status == ExperimentStatus.keep and experiment.metric is not None:
            if best is not None:
                gain = best - experiment.metric if goal == "minimize" else experiment.metric - best
                found.append(Improvement(experiment, best, gain))
            best = experiment.metric
    return sorted(found, key=lambda item: -item.gain)


def draw(experiments: list[Experiment], goal: str, path: Path, title: str = "") -> Path:
    """Every experiment's metric in order, kept ones marked, the running best as a step line."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ClawError("the research report needs matplotlib",
                        hint="pip install 'clawfleet[research]'  (or: pip install matplotlib)") from None
    done = [e for e in experiments if e.status != ExperimentStatus.running]
    if not done:
        raise ClawError("no experiments to plot yet", hint="run `claw research run` first")
    xs = list(range(1, len(done) + 1))
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    groups = {
        "discarded": ([x for x, e in zip(xs, done) if e.status == ExperimentStatus.discard and e.metric is not None],
                      "o", "#9a9a9a", 18),
        "kept": ([x for x, e in zip(xs, done) if e.status in (ExperimentStatus.keep, ExperimentStatus.baseline)],
                 "o", "#1a9850", 46),
    }
    for label, (points, marker, color, size) in groups.items():
        axes.scatter(points, [done[x - 1].metric for x in points], marker=marker, color=color, s=size,
                     label=label, zorder=3)
    # The running best: it moves at the baseline (a new run) and at every kept experiment.
    best_x, best_y, best = [], [], None
    for x, experiment in zip(xs, done):
        if experiment.status in (ExperimentStatus.baseline, ExperimentStatus.keep):
            best = experiment.metric
        if best is not None:
            best_x.append(x)
            best_y.append(best)
    axes.step(best_x, best_y, where="post", color="#1a9850", linewidth=1.5, label="best so far")
    failed = [x for x, e in zip(xs, done) if e.status in _FAILED]
    if failed:
        for x in failed:
            axes.axvline(x, color="#d73027", alpha=0.25, linewidth=1)
        axes.plot([], [], color="#d73027", alpha=0.5, label=f"crash / timeout ({len(failed)})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("experiment")
    axes.set_ylabel(f"metric ({'lower' if goal == 'minimize' else 'higher'} is better)")
    axes.set_title(title or "research")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
