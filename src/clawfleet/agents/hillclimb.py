"""`hillclimb`: a research agent that needs no model. It changes the numbers a config declares.

    [research.params.lr]
    file = "params.json"     # JSON or TOML, relative to the repository root
    min = 0.0001
    max = 0.1
    log = true               # search on a log scale

Each experiment changes one or two parameters: mostly a local step around the best values so far
(the worktree starts at the best commit), sometimes a fresh random value (to leave a local
optimum). The step shrinks while rounds bring nothing and grows after a kept change. Values
already tried from the same starting point are not proposed again.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClawError
from . import AgentJob, AgentOutcome

RANDOM_SHARE = 0.2       # proposals that jump to a random value instead of a local step
TWO_PARAM_SHARE = 0.3    # local steps that move two parameters at once
STEP_START, STEP_MIN, STEP_MAX = 0.15, 0.03, 0.35   # in units of the (log) range


@dataclass(frozen=True)
class Param:
    name: str
    file: str
    key: str
    min: float
    max: float
    integer: bool = False
    log: bool = False

    @classmethod
    def from_config(cls, name: str, data: Mapping[str, Any]) -> "Param":
        return cls(name=name, file=data["file"], key=data.get("key") or name, min=float(data["min"]),
                   max=float(data["max"]), integer=bool(data.get("integer")), log=bool(data.get("log")))

    def to_unit(self, value: float) -> float:
        """Where `value` sits in the range, 0..1 (on a log scale for log parameters)."""
        value = min(max(value, self.min), self.max)
        if self.log:
            return math.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / (self.max - self.min)

    def from_unit(self, unit: float) -> float | int:
        unit = min(max(unit, 0.0), 1.0)
        value = (self.min * (self.max / self.min) ** unit if self.log
                 else self.min + unit * (self.max - self.min))
        return round(value) if self.integer else float(f"{value:.4g}")


# -- reading and writing parameter files ---------------------------------------------------

def read_params(root: Path, params: list[Param]) -> dict[str, float]:
    values = {}
    for param in params:
        data = _load(root / param.file)
        value: Any = data
        for part in param.key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ClawError(f"{param.file} has no key `{param.key}` (research parameter '{param.name}')",
                                hint="add it to the file, or fix `key` under [research.params] in .claw/config.toml")
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ClawError(f"`{param.key}` in {param.file} is {value!r}, not a number",
                            hint="research parameters must be numbers")
        values[param.name] = value
    return values


def write_params(root: Path, params: list[Param], values: Mapping[str, float]) -> None:
    for param in params:
        if param.name not in values:
            continue
        path = root / param.file
        if path.suffix == ".json":
            data = _load(path)
            node = data
            *parents, last = param.key.split(".")
            for part in parents:
                node = node[part]
            node[last] = values[param.name]
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            path.write_text(_set_toml_number(path.read_text(), param.key, values[param.name]))


def _load(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ClawError(f"cannot read the parameter file {path}: {error.strerror}",
                        hint="check `file` under [research.params] in .claw/config.toml") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ClawError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {error}",
                        hint="parameter files are JSON (.json) or TOML (anything else)") from None


def _set_toml_number(text: str, key: str, value: float) -> str:
    """Replace `name = number` in the table the dotted key names, keeping comments and layout."""
    *table, name = key.split(".")
    lines, in_table = text.splitlines(keepends=True), not table
    for index, line in enumerate(lines):
        header = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            in_table = [p.strip().strip('"') for p in header.group(1).split(".")] == table
            continue
        match = re.match(rf"(\s*{re.escape(name)}\s*=\s*)([^#\n]*?)(\s*(#.*)?\n?)$", line)
        if in_table and match:
            lines[index] = f"{match.group(1)}{value!r}{match.group(3)}"
            return "".join(lines)
    raise ClawError(f"cannot find `{key} = ...` to change in the TOML parameter file",
                    hint="write it as a plain `name = number` line")


# -- the search ----------------------------------------------------------------------------

class ParamSearch:
    """Proposals for every parallel experiment of a run; thread-safe, seeded for tests."""

    def __init__(self, params: list[Param], seed: int | None = None) -> None:
        if not params:
            raise ClawError("the hillclimb agent has no parameters to change",
                            hint="declare some under [research.params.NAME] in .claw/config.toml "
                                 "(file, min, max), or pick another agent with --agent")
        self.params = params
        self.rng = random.Random(seed)
        self.step = STEP_START
        self.tried: set[tuple] = set()
        self._lock = threading.Lock()

    def remember(self, values: Mapping[str, float]) -> None:
        """A set of values already measured (from earlier runs or the baseline): not proposed again."""
        with self._lock:
            self.tried.add(self._key(values))

    def observe(self, kept: bool) -> None:
        """After a round: a kept change widens the step, a round without one narrows it."""
        with self._lock:
            self.step = min(self.step * 1.3, STEP_MAX) if kept else max(self.step * 0.8, STEP_MIN)

    def propose(self, current: Mapping[str, float]) -> tuple[dict[str, float], str]:
        """New values (from the best ones, `current`) and a one-line hypothesis."""
        with self._lock:
            for _ in range(50):
                values, changes = dict(current), []
                jump = self.rng.random() < RANDOM_SHARE
                count = 1 if jump or len(self.params) == 1 or self.rng.random() >= TWO_PARAM_SHARE else 2
                for param in self.rng.sample(self.params, count):
                    old = current[param.name]
                    unit = self.rng.random() if jump else param.to_unit(old) + self.rng.gauss(0, self.step)
                    new = param.from_unit(unit)
                    if new == old and param.integer:  # a step too small to move an integer: one up or down
                        moves = [old + d for d in (-1, 1) if param.min <= old + d <= param.max]
                        new = int(self.rng.choice(moves)) if moves else old
                    values[param.name] = new
                    if new != old:
                        changes.append(f"{param.name} {old:g} -> {new:g}")
                key = self._key(values)
                if key not in self.tried and values != dict(current):
                    self.tried.add(key)
                    kind = "random jump" if jump else f"local step {self.step:.2f}"
                    return values, f"{', '.join(changes)} ({kind})"
            raise ClawError("the hillclimb agent found no untried values near the best",
                            hint="widen the ranges under [research.params], or stop the run")

    @staticmethod
    def _key(values: Mapping[str, float]) -> tuple:
        return tuple(sorted((k, float(v)) for k, v in values.items()))


class HillclimbAgent:
    """Changes the declared parameters in the worktree; `proposals` keeps what each experiment tried."""

    def __init__(self, name: str, search: ParamSearch) -> None:
        self.name = name
        self.search = search
        self.proposals: dict[int, dict[str, float]] = {}

    def run(self, job: AgentJob) -> AgentOutcome:
        try:
            current = read_params(job.workspace, self.search.params)
            values, hypothesis = self.search.propose(current)
            write_params(job.workspace, self.search.params, values)
        except ClawError as error:
            return AgentOutcome(error=str(error), exit_code=1)
        self.proposals[job.attempt_id] = values
        with open(job.log, "a") as log:
            log.write(f"hillclimb: {hypothesis}\n")
        return AgentOutcome(summary=hypothesis)
