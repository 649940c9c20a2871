"""Research mode: experiments that change code, run for a fixed time and stay only if the metric improves.

    loop = ResearchLoop(project, parallel=2, hours=8)
    run = loop.run()          # until the hours, --max-experiments or Ctrl-C

Each round starts `parallel` experiments from the best commit so far, each in its own worktree:
the agent states a hypothesis and changes files in scope, the change is committed, the
experiment command runs (killed at its time budget, its whole process group) and the metric is
read from its output. The best experiment of a round that beats the best moves the research
branch `claw/research/NAME` (compare-and-swap); every other one is discarded, with its reason.
Every outcome is a row in the store and in `results.tsv`, and the next prompt lists them, so an
idea that failed is not tried again blindly.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import git, redact, sandbox
from .agents import Agent, AgentJob, make_agent
from .config import ResearchConfig, ResearchScheduleConfig
from .containment import Reach, contain
from .errors import ClawError
from .footprint import matches
from .models import Experiment, ExperimentStatus, ResearchRun
from .procs import ChildGroups, cmdline, pid_alive
from .project import Project

TAIL_CHARS = 2000           # of an experiment's output, kept with a crash or timeout
HISTORY_IN_PROMPT = 40      # earlier outcomes an agent's prompt lists
AGENT_FAILURES_TO_STOP = 3  # rounds in a row where the agent itself failed every experiment
RESULTS_HEADER = ("experiment", "commit", "metric", "seconds", "cpu_seconds", "max_rss_mb", "status",
                  "description", "reason")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def research_config(project: Project) -> ResearchConfig:
    if project.config.research is None:
        raise ClawError(f"{project.config_path} has no [research] section",
                        hint="run `claw research init DIR` to write program.md and the section")
    return project.config.research


def branch_for(name: str) -> str:
    return f"claw/research/{name}"


def research_dir(project: Project, name: str) -> Path:
    """Where a research name keeps results.tsv, the plot, each experiment's logs and worktrees."""
    return project.run_dir / "research" / name


# -- the metric ------------------------------------------------------------------------------

class MetricError(Exception):
    """The experiment's output holds no readable metric; the message says what was wrong."""


def read_metric(output: str, config: ResearchConfig) -> float:
    """The metric in an experiment's output: the last regex match, or a key of the last JSON line."""
    if config.metric_regex is not None:
        found = list(re.finditer(config.metric_regex, output, re.MULTILINE))
        if not found:
            raise MetricError(f"no match for metric_regex {config.metric_regex!r} in the output")
        match = found[-1]
        text = match.group(1) if match.re.groups else match.group(0)
        return _number(text, f"metric_regex {config.metric_regex!r} matched {text!r}")
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        for part in config.metric_key.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise MetricError(f"metric_key {config.metric_key!r} is {value!r}, not a number")
            return _number(str(value), f"metric_key {config.metric_key!r} is {value!r}")
    raise MetricError(f"no JSON line with the key {config.metric_key!r} in the output")


def _number(text: str, where: str) -> float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise MetricError(f"{where}, which is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise MetricError(f"{where}, which is not finite")
    return value


def is_better(metric: float, best: float, goal: str, margin: float = 0.0) -> bool:
    return metric < best - margin if goal == "minimize" else metric > best + margin


def out_of_scope(paths: Sequence[str], scope: Sequence[str]) -> list[str]:
    return [path for path in paths if not any(matches(glob, path) for glob in scope)]


# -- results.tsv -------------------------------------------------------------------------------

def results_path(project: Project, name: str) -> Path:
    return research_dir(project, name) / "results.tsv"


def append_result(path: Path, experiment: Experiment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()

    def clean(text: str | None) -> str:
        return " ".join((text or "").split())

    def number(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    row = (str(experiment.id), (experiment.commit_sha or "")[:12], number(experiment.metric, ".6g"),
           number(experiment.seconds, ".2f"), number(experiment.cpu_seconds, ".2f"),
           number(experiment.max_rss_mb, ".1f"), str(experiment.status), clean(experiment.description),
           clean(experiment.reason))
    with open(path, "a") as handle:
        if new:
            handle.write("\t".join(RESULTS_HEADER) + "\n")
        handle.write("\t".join(row) + "\n")


# -- the loop ----------------------------------------------------------------------------------

@dataclass
class _Trial:
    """What one experiment came to, before the round decides keep or discard."""
    commit: str | None = None
    status: ExperimentStatus | None = None     # None: measured, the round decides
    metric: float | None = None
    reason: str | None = None
    description: str = ""
    params: dict | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None
    log_tail: str | None = None
    agent_failed: bool = False


@dataclass
class _Slot:
    path: Path
    children: ChildGroups


@dataclass
class ResearchLoop:
    project: Project
    agent: str | None = None
    parallel: int | None = None
    hours: float | None = None
    max_experiments: int | None = None
    seed: int | None = None
    on_experiment: Callable[[Experiment, float | None], None] = field(default=lambda e, best: None)
    on_warning: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr))

    def __post_init__(self) -> None:
        self.config = research_config(self.project)
        self.agent_name = self.agent or self.config.agent
        self.parallel = self.parallel or self.config.parallel
        self.root = self.project.root
        self.store = self.project.store
        self.branch = branch_for(self.config.name)
        self.dir = research_dir(self.project, self.config.name)
        self.results = self.dir / "results.tsv"
        self.search = None          # the hillclimb agent's search, when that is the agent
        self.gateway = None         # with `[gateway] enabled`, every experiment's model calls are metered
        self.sandbox: sandbox.SandboxPolicy | None = None   # the agents' and experiments' (run() sets it)
        self.common_dir = git.common_dir(self.root)
        self.included: list[Path] = []   # [workspace] include files, scanned for in what is kept

    # -- setup ---------------------------------------------------------------------------------

    def _check_ready(self) -> str:
        """The research branch's tip (made from the target branch on the first run)."""
        self.project.require_commits()
        if self.max_experiments is not None and self.max_experiments < 1:
            raise ClawError("--max-experiments must be at least 1", hint="or leave it out: no limit")
        if self.hours is not None and self.hours <= 0:
            raise ClawError("--hours must be more than 0", hint="e.g. --hours 0.5, or leave it out")
        for run in self.store.research_runs(self.config.name):
            if run.state == "running" and run.pid != os.getpid() and pid_alive(run.pid):
                raise ClawError(f"research run {run.id} on {run.branch} is already running (pid {run.pid})",
                                hint="wait for it, or stop it with Ctrl-C / kill first")
        program = self.root / self.config.program
        if not program.is_file():
            raise ClawError(f"the research program {program} does not exist",
                            hint="run `claw research init`, or fix `program` under [research]")
        tip = git.branch_tip(self.root, self.branch)
        if tip is None:
            tip = self.project.target_tip()
            git.update_ref(self.root, self.branch, tip, "0" * 40, "claw research: start")
        checked_out = git.worktree_of_branch(self.root, self.branch)
        if checked_out is not None:
            if git.is_dirty(checked_out):
                raise ClawError(f"the research branch {self.branch} has uncommitted changes in {checked_out}",
                                hint="commit or stash them there, then switch that checkout to another branch")
            raise ClawError(f"the research branch {self.branch} is checked out in {checked_out}",
                            hint="switch that checkout to another branch: the loop moves this one itself")
        return tip

    def _make_agent(self) -> Agent:
        if self.agent_name == "hillclimb":
            from .agents.hillclimb import HillclimbAgent, Param, ParamSearch
            params = [Param.from_config(name, spec.model_dump()) for name, spec in self.config.params.items()]
            self.search = ParamSearch(params, seed=self.seed if self.seed is not None else self.config.seed)
            for earlier in self.store.experiments(name=self.config.name):
                if earlier.params:
                    self.search.remember(earlier.params)
            return HillclimbAgent("hillclimb", self.search)
        return make_agent(self.agent_name, self.project.config.agent(self.agent_name).model_dump())

    def _agent_for(self, experiment: Experiment, shared: Agent) -> Agent:
        """The agent of one experiment: pointed at the gateway under the experiment's own key,
        so its calls are metered against it (the URL carries the key: parallel experiments
        cannot take each other's)."""
        if self.gateway is None or self.search is not None:
            return shared
        from .runner import point_at_gateway

        url, key = self.gateway.experiment_url(experiment.id), self.gateway.experiment_key(experiment.id)
        config = point_at_gateway(self.project.config.agent(self.agent_name).model_dump(), url, key)
        if config.get("kind") == "command":
            config = {**config, "env": {**config.get("env", {}), "CLAW_GATEWAY_URL": url, "CLAW_GATEWAY_KEY": key}}
        return make_agent(self.agent_name, config)

    @contextmanager
    def _metered(self) -> Iterator[None]:
        """A gateway of the run's own (on a free port) while its agent calls models."""
        if not self.project.config.gateway.enabled or self.search is not None:
            yield
            return
        from .llm.gateway import GatewayServer

        self.gateway = GatewayServer(self.root)
        self.gateway.start()
        try:
            yield
        finally:
            self.gateway.stop()
            self.gateway = None

    def _make_slots(self, commit: str) -> list[_Slot]:
        slots = []
        for index in range(self.parallel):
            path = self.dir / "worktrees" / f"slot-{index}"
            children = ChildGroups(self.dir / f"children-{index}")
            children.kill_all()      # experiments a killed run left running
            if path.exists():        # and its worktree
                git.remove_worktree(self.root, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            git.add_detached_worktree(self.root, path, commit)
            slots.append(_Slot(path, children))
        return slots

    # -- running ---------------------------------------------------------------------------

    def run(self) -> ResearchRun:
        tip = self._check_ready()
        # The agent's edits and the experiment that runs them are an attempt's: contained alike.
        self.sandbox = sandbox.resolve(self.project.config.sandbox, warn=self.on_warning)
        secrets = self.project.secret_sources()
        redact.learn_env(secrets["env"])
        self.included = [Path(path) for path in secrets["files"]]
        redact.learn_files(self.included, self.root)
        agent = self._make_agent()
        self.dir.mkdir(parents=True, exist_ok=True)
        run = self.store.start_research_run(name=self.config.name, branch=self.branch, agent=self.agent_name,
                                            goal=self.config.goal, parallel=self.parallel, base_commit=tip,
                                            pid=os.getpid())
        slots: list[_Slot] = []
        state, reason = "finished", None
        try:
            slots = self._make_slots(tip)
            best_metric = self._baseline(run, slots[0], tip)
            with self._metered():
                self._rounds(run, slots, agent, tip, best_metric)
        except KeyboardInterrupt:
            state, reason = "stopped", "stopped by the person (Ctrl-C)"
        except ClawError as error:
            state, reason = "failed", str(error)
            raise
        except BaseException as error:
            state, reason = "failed", f"{type(error).__name__}: {error}"
            raise
        finally:
            for slot in slots:
                slot.children.kill_all()
                git.remove_worktree(self.root, slot.path)
            for left in self.store.experiments(run_id=run.id):
                if left.status == ExperimentStatus.running:
                    self._record(left, ExperimentStatus.discard,
                                 _Trial(reason="stopped before it finished"), best=None)
            self.store.update_research_run(run.id, f"research.{state}", state=state, reason=reason,
                                           finished_at=time.time())
        return self.store.get_research_run(run.id)

    def _baseline(self, run: ResearchRun, slot: _Slot, tip: str) -> float:
        experiment = self.store.start_experiment(run.id, name=self.config.name, round=0, parent_commit=tip)
        trial = self._measure(slot, experiment, _Trial(commit=tip, description="baseline: the best commit, unchanged"))
        if self.search is not None:
            from .agents.hillclimb import read_params
            trial.params = read_params(slot.path, self.search.params)
            self.search.remember(trial.params)
        status = trial.status or ExperimentStatus.baseline
        done = self._record(experiment, status, trial, best=None)
        if status == ExperimentStatus.timeout:
            raise ClawError(f"time budget too small: the unchanged code did not finish within "
                            f"{self.config.time_budget:g} s (log: {self._log(experiment)})",
                            hint="raise `time_budget` under [research] in .claw/config.toml, or make "
                                 "the experiment shorter")
        if status == ExperimentStatus.crash:
            raise ClawError(f"the experiment fails on the unchanged code: {trial.reason}\n"
                            f"{(trial.log_tail or '').strip()[-800:]}",
                            hint=f"fix `command` or the metric under [research] (full log: {self._log(experiment)})")
        self.store.update_research_run(run.id, "research.baseline", baseline_metric=done.metric,
                                       best_metric=done.metric, best_commit=tip)
        return done.metric

    def _rounds(self, run: ResearchRun, slots: list[_Slot], agent: Agent, best: str, best_metric: float) -> None:
        deadline = None if self.hours is None else time.time() + self.hours * 3600
        done, round_number, failing = 0, 0, 0
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="experiment") as pool:
            while deadline is None or time.time() < deadline:
                if self.max_experiments is not None and done >= self.max_experiments:
                    break
                round_number += 1
                count = self.parallel if self.max_experiments is None else min(self.parallel,
                                                                               self.max_experiments - done)
                prompt = self._prompt(best_metric)
                started = [self.store.start_experiment(run.id, name=self.config.name, round=round_number,
                                                       parent_commit=best) for _ in range(count)]
                futures = [pool.submit(self._try, slots[i], started[i], best, agent, prompt)
                           for i in range(count)]
                try:
                    wait(futures)
                except KeyboardInterrupt:
                    for slot in slots:  # the experiments end at once; run() records them as stopped
                        slot.children.kill_all()
                    wait(futures)
                    raise
                trials = [future.result() for future in futures]
                best, best_metric = self._decide(run, started, trials, best, best_metric)
                done += count
                # An agent that cannot work (no model, no values left) would fail every round.
                failing = failing + 1 if all(t.agent_failed for t in trials) else 0
                if failing >= AGENT_FAILURES_TO_STOP:
                    raise ClawError(f"the agent '{self.agent_name}' failed in every experiment of "
                                    f"{failing} rounds in a row: {trials[-1].reason}",
                                    hint=f"see the agent's log in {self.dir / 'experiments'}; fix the agent "
                                         "or its config, then run again")

    def _try(self, slot: _Slot, experiment: Experiment, base: str, agent: Agent, prompt: str) -> _Trial:
        """One experiment in a worker thread: the agent's change, the scope check, the run."""
        workdir = self.dir / "experiments" / str(experiment.id)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            git.reset_worktree(slot.path, base)
            prompt_file = workdir / "prompt.md"
            prompt_file.write_text(prompt)
            git_dir = None
            if self.sandbox is not None:   # the repository's git dir is read-only inside
                git_dir = workdir / "git"
                git.refresh_agent_git_dir(slot.path, git.admin_dir(slot.path), self.common_dir,
                                          git_dir, self.branch)
            outcome = self._agent_for(experiment, agent).run(AgentJob(
                task_id=0, attempt_id=experiment.id, agent_name=self.agent_name, workspace=slot.path,
                attempt_dir=workdir, prompt=prompt, prompt_file=prompt_file, log=workdir / "agent.log",
                deadline=time.time() + self.config.agent_timeout, children=slot.children,
                project_root=self.root, sandbox=self.sandbox, common_dir=self.common_dir,
                git_dir=git_dir))
            description = (outcome.summary.strip().splitlines() or ["(the agent gave no hypothesis)"])[0][:300]
            params = getattr(agent, "proposals", {}).get(experiment.id)
            head = git.commit_all(slot.path, f"research: {description}\n\nclawfleet experiment {experiment.id}")
            trial = _Trial(commit=head, description=description, params=params)
            if outcome.error:
                trial.status, trial.reason = ExperimentStatus.crash, f"the agent failed: {outcome.error}"
                trial.agent_failed = True
                trial.log_tail = _tail(workdir / "agent.log")
                return trial
            if head is None:
                trial.status, trial.reason = ExperimentStatus.discard, "the agent changed nothing"
                return trial
            outside = out_of_scope(git.changed_files(self.root, base, head), self.config.scope)
            if outside:
                trial.status = ExperimentStatus.discard
                trial.reason = (f"edited files outside scope ({', '.join(self.config.scope)}): "
                                f"{', '.join(outside[:10])}")
                return trial
            leak = self._secrets_in(base, head)
            if leak:   # the research branch is the person's to merge: nothing that leaks gets on it
                trial.status, trial.reason = ExperimentStatus.discard, leak
                return trial
            return self._measure(slot, experiment, trial)
        except git.WorktreeTampered as error:
            # The agent rewrote what its worktree tells git: no git of ours runs there again.
            self._rebuild(slot, base)
            return _Trial(status=ExperimentStatus.crash, agent_failed=True, description="(tampered)",
                          reason=f"the agent tampered with its worktree's git files, so the slot was "
                                 f"made again: {error.message}")
        except ClawError as error:
            return _Trial(status=ExperimentStatus.crash, reason=str(error), description="(setup failed)")
        finally:
            redact.current().tree(workdir)  # the agent's log and transcripts, as an attempt's

    def _secrets_in(self, base: str, head: str) -> str | None:
        """Why an experiment's commit must not go on the research branch (see secretscan.py)."""
        from . import secretscan

        findings = secretscan.scan(self.root, base, head, redact.current(), included=self.included)
        return secretscan.describe(findings) if findings else None

    def _rebuild(self, slot: _Slot, commit: str) -> None:
        slot.children.kill_all()
        git.remove_worktree(self.root, slot.path)
        git.add_detached_worktree(self.root, slot.path, commit)

    def _measure(self, slot: _Slot, experiment: Experiment, trial: _Trial) -> _Trial:
        """Run the experiment command in the slot, killed at the time budget, and read its metric."""
        cwd = slot.path / self.config.workdir
        if not cwd.is_dir():
            raise ClawError(f"the research workdir {self.config.workdir!r} does not exist in the worktree",
                            hint="fix `workdir` under [research] (relative to the repository root)")
        log = self._log(experiment)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CLAW_EXPERIMENT_ID": str(experiment.id), "CLAW_RESEARCH": self.config.name,
               "PYTHONUNBUFFERED": "1"}
        # The experiment runs the agent's code: in the agent's sandbox (wait4 still measures it,
        # bwrap waiting for everything inside).
        reach = Reach(worktree=slot.path, project_root=self.root, common_dir=self.common_dir, cwd=cwd)
        with contain(self.sandbox, ["bash", "-c", self.config.command], env, reach) as (args, env):
            finished = slot.children.run_measured(args, cwd=cwd, env=env, timeout=self.config.time_budget,
                                                  log=log)
        output = log.read_text(errors="replace")
        trial.seconds, trial.cpu_seconds, trial.max_rss_mb = (finished.duration, finished.cpu_seconds,
                                                              finished.max_rss_mb)
        if finished.timed_out:
            trial.status = ExperimentStatus.timeout
            trial.reason = f"killed at its time budget of {self.config.time_budget:g} s"
        elif finished.exit_code != 0:
            trial.status, trial.reason = ExperimentStatus.crash, f"the experiment exited with status {finished.exit_code}"
        else:
            try:
                trial.metric = read_metric(output, self.config)
            except MetricError as error:
                trial.status, trial.reason = ExperimentStatus.crash, str(error)
        if trial.status is not None:
            trial.log_tail = output[-TAIL_CHARS:]
        return trial

    def _decide(self, run: ResearchRun, started: list[Experiment], trials: list[_Trial], best: str,
                best_metric: float) -> tuple[str, float]:
        """Keep the round's best improvement (moving the branch), discard the rest, with reasons."""
        goal, margin = self.config.goal, self.config.min_improvement
        improved = [(e, t) for e, t in zip(started, trials)
                    if t.status is None and is_better(t.metric, best_metric, goal, margin)]
        winner = None
        if improved:
            winner = min(improved, key=lambda pair: pair[1].metric if goal == "minimize" else -pair[1].metric)
        for experiment, trial in zip(started, trials):
            if trial.status is not None:
                self._record(experiment, trial.status, trial, best=best_metric)
            elif winner is not None and experiment.id == winner[0].id:
                try:
                    git.update_ref(self.root, self.branch, trial.commit, best,
                                   f"claw research: keep experiment {experiment.id}")
                except git.GitError as error:
                    self._record(experiment, ExperimentStatus.discard,
                                 _replace(trial, reason="the research branch moved under the loop"), best=best_metric)
                    raise ClawError(f"{self.branch} was moved by someone else during the run",
                                    hint="let one loop own the research branch; start the run again") from error
                self._record(experiment, ExperimentStatus.keep,
                             _replace(trial, reason=f"{trial.metric:g} beats {best_metric:g}"), best=best_metric)
            elif winner is not None and is_better(trial.metric, best_metric, goal, margin):
                self._record(experiment, ExperimentStatus.discard,
                             _replace(trial, reason=f"{trial.metric:g} beats {best_metric:g}, but experiment "
                                                    f"{winner[0].id} did better in the same round"),
                             best=best_metric)
            else:
                by = f" by more than {margin:g}" if margin else ""
                self._record(experiment, ExperimentStatus.discard,
                             _replace(trial, reason=f"{trial.metric:g} is not better than the best {best_metric:g}{by}"),
                             best=best_metric)
        if self.search is not None:
            self.search.observe(kept=winner is not None)
        if winner is None:
            return best, best_metric
        commit, metric = winner[1].commit, winner[1].metric
        self.store.update_research_run(run.id, "research.improved", best_commit=commit, best_metric=metric)
        return commit, metric

    def _record(self, experiment: Experiment, status: ExperimentStatus, trial: _Trial,
                best: float | None) -> Experiment:
        if trial.commit:   # a discarded change is kept too: `git show refs/claw/research/NAME/ID`
            git.pin(self.root, f"refs/claw/research/{self.config.name}/{experiment.id}", trial.commit)
        done = self.store.finish_experiment(
            experiment.id, status, commit_sha=trial.commit, description=trial.description, reason=trial.reason,
            params=trial.params, metric=trial.metric, seconds=trial.seconds, cpu_seconds=trial.cpu_seconds,
            max_rss_mb=trial.max_rss_mb, log_tail=trial.log_tail)
        append_result(self.results, done)
        self._learn(done, best)
        self.on_experiment(done, best)
        return done

    def _learn(self, experiment: Experiment, best: float | None) -> None:
        """Every outcome goes into the claw's memory (`[memory] learn`), the baseline aside."""
        if experiment.round == 0 or not self.project.config.memory.learn:
            return
        from . import memory
        try:
            memory.learn_from_experiment(self.store, experiment, best)
        except ClawError:
            pass  # a lesson lost is not worth stopping the loop for; results.tsv has it

    def _log(self, experiment: Experiment) -> Path:
        return self.dir / "experiments" / str(experiment.id) / "run.log"

    def _prompt(self, best_metric: float) -> str:
        from .prompt import render_research_prompt

        from . import memory

        history = self.store.experiments(name=self.config.name)[-HISTORY_IN_PROMPT:]
        program = (self.root / self.config.program).read_text()
        # Beyond the latest outcomes listed: what memory holds about this program, older
        # experiments and the person's own notes included.
        limit = self.project.config.memory.prompt_notes
        return render_research_prompt(self.config, program=program, branch=self.branch, best_metric=best_metric,
                                      history=[e for e in history if e.status != ExperimentStatus.running],
                                      agents_md=_read(self.root / "AGENTS.md"),
                                      memory=memory.recall(self.store, f"research {self.config.name} {self.config.goal} {program}", limit))


def _replace(trial: _Trial, **changes) -> _Trial:
    return _Trial(**{**trial.__dict__, **changes})


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-TAIL_CHARS:]
    except OSError:
        return ""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# -- looking at a loop -------------------------------------------------------------------------

def run_state(run: ResearchRun) -> str:
    """A run's state, with `died` for one whose process is gone without saying how it ended."""
    if run.state == "running" and not pid_alive(run.pid):
        return "died"
    return run.state


def status_summary(project: Project) -> dict:
    """The latest run of the configured research name, and counts over all of its experiments."""
    config = research_config(project)
    runs = project.store.research_runs(config.name)
    experiments = project.store.experiments(name=config.name)
    counts: dict[str, int] = {}
    for experiment in experiments:
        counts[str(experiment.status)] = counts.get(str(experiment.status), 0) + 1
    latest = runs[-1] if runs else None
    summary = {"name": config.name, "branch": branch_for(config.name), "goal": config.goal,
               "best_commit": git.branch_tip(project.root, branch_for(config.name)),
               "results": str(results_path(project, config.name)), "counts": counts, "run": None,
               "running": [], "recent": []}
    if latest is not None:
        mine = [e for e in experiments if e.run_id == latest.id]
        finished = [e for e in mine if e.finished_at and e.round > 0]
        elapsed = (latest.finished_at or time.time()) - latest.started_at
        summary["run"] = {
            "id": latest.id, "state": run_state(latest), "reason": latest.reason, "agent": latest.agent,
            "parallel": latest.parallel, "started_at": latest.started_at, "elapsed_s": elapsed,
            "baseline_metric": latest.baseline_metric, "best_metric": latest.best_metric,
            "experiments": len(finished),
            "experiments_per_hour": len(finished) / elapsed * 3600 if elapsed > 0 else 0.0,
            "metered_tokens": 0, "cost": 0.0}
        summary["run"]["metered_tokens"], summary["run"]["cost"] = project.store.research_spend(latest.id)
        summary["running"] = [{"id": e.id, "round": e.round, "since_s": time.time() - e.started_at}
                              for e in mine if e.status == ExperimentStatus.running]
        summary["recent"] = [{"id": e.id, "status": str(e.status), "metric": e.metric,
                              "description": e.description, "reason": e.reason}
                             for e in mine if e.status != ExperimentStatus.running][-8:]
    return summary


# -- claw research init ------------------------------------------------------------------------

def initialize_research(root: Path, folder: Path, *, command: str, metric_regex: str | None,
                        metric_key: str | None, goal: str, time_budget: float,
                        scope: Sequence[str], name: str = "default") -> list[str]:
    """Write FOLDER/program.md and a [research] section in .claw/config.toml; return what was written.

    Never overwrites: an existing program.md is kept, an existing [research] section is an error.
    """
    from importlib import resources

    from pydantic import ValidationError

    from .config import load_config
    from .project import initialize

    top = git.toplevel(root)
    folder = (root / folder).resolve()
    try:
        relative = folder.relative_to(top.resolve()).as_posix()
    except ValueError:
        raise ClawError(f"{folder} is outside the repository {top}",
                        hint="give a folder inside it (or `.` for the repository root)") from None
    relative = "" if relative == "." else relative
    if (metric_regex is None) == (metric_key is None):
        raise ClawError("say how to read the metric: --metric-regex or --metric-key (one of them)",
                        hint="e.g. --metric-regex 'val_loss=([0-9.]+)' or --metric-key val_loss")
    if time_budget <= 0:
        raise ClawError(f"the time budget must be more than 0 s (got {time_budget:g})",
                        hint="--time-budget SECONDS: how long one experiment may run")
    prefix = f"{relative}/" if relative else ""
    scope = list(scope) or [f"{prefix}**" if relative else "**"]
    program = f"{prefix}program.md"
    how = f"the regex `{metric_regex}`" if metric_regex is not None else f"the JSON key `{metric_key}`"
    try:
        ResearchConfig(name=name, program=program, command=command, workdir=relative or ".",
                       metric_regex=metric_regex, metric_key=metric_key, goal=goal,
                       time_budget=time_budget, scope=scope)
    except ValidationError as error:
        problem = "; ".join(item["msg"].removeprefix("Value error, ") for item in error.errors()[:2])
        raise ClawError(f"cannot write that [research] section: {problem}",
                        hint="see `claw research init --help`") from None
    config_path = top / ".claw" / "config.toml"
    if load_config(config_path).research is not None:
        raise ClawError(f"{config_path} already has a [research] section",
                        hint="edit it there, or delete it to run `claw research init` again")
    written = initialize(top)
    if not (top / program).exists():
        folder.mkdir(parents=True, exist_ok=True)
        text = (resources.files("clawfleet") / "templates" / "program.md").read_text()
        (top / program).write_text(text.format(
            goal="Lower" if goal == "minimize" else "Raise", command=command, how=how, budget=time_budget,
            scope="\n".join(f"- `{glob}`" for glob in scope)))
        written.append(program)
    metric_line = (f"metric_regex = {json.dumps(metric_regex)}" if metric_regex is not None
                   else f"metric_key = {json.dumps(metric_key)}")
    section = f"""
[research]
name = {json.dumps(name)}
program = {json.dumps(program)}
command = {json.dumps(command)}
workdir = {json.dumps(relative or ".")}
{metric_line}
goal = {json.dumps(goal)}
time_budget = {time_budget:g}       # seconds; the experiment's process group is killed after this
scope = [{", ".join(json.dumps(glob) for glob in scope)}]
agent = "hillclimb"       # no model needed; or any agent under [agents]
parallel = 1
# The numbers the hillclimb agent may change, each in a JSON or TOML file:
# [research.params.lr]
# file = "{prefix}params.json"
# min = 0.0001
# max = 0.1
# log = true
"""
    with open(config_path, "a") as handle:
        handle.write(section)
    written.append(str(config_path.relative_to(top)) + " [research]")
    return written


def launch(project: Project, schedule: str, options: ResearchScheduleConfig) -> str:
    """Start `claw research run` in the background for a schedule; say what was done.

    The run outlives whoever starts it (a session of its own), logs to
    `.claw/run/research/scheduled-<schedule>.log`, and is not started again while the last one
    a schedule started still runs.
    """
    folder = project.run_dir / "research"
    folder.mkdir(parents=True, exist_ok=True)
    pid_file, log = folder / f"scheduled-{schedule}.pid", folder / f"scheduled-{schedule}.log"
    try:
        previous = int(pid_file.read_text())
    except (OSError, ValueError):
        previous = None
    if previous and pid_alive(previous) and "research" in cmdline(previous):
        return f"not started: the previous run (pid {previous}) still runs"
    args = [sys.executable, "-m", "clawfleet", "research", "run"]
    for flag, value in (("--hours", options.hours), ("--max-experiments", options.max_experiments),
                        ("--parallel", options.parallel), ("--agent", options.agent)):
        if value is not None:
            args += [flag, str(value)]
    with open(log, "ab") as out:
        process = subprocess.Popen(args, cwd=project.root, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(process.pid))
    # Reaped when it ends, so a finished run is not taken for a live one (a zombie has a pid).
    threading.Thread(target=process.wait, name=f"research {schedule}", daemon=True).start()
    return f"started (pid {process.pid}), log {log}"
