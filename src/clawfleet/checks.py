"""Checks: the project's own commands (tests, lint) run in a worktree, output kept."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from . import private, redact
from .procs import ChildGroups

TAIL_CHARS = 4000


@dataclass
class CheckResult:
    command: str
    exit_code: int
    timed_out: bool
    duration: float
    log: str
    tail: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def run_checks(commands: Sequence[str], *, cwd: Path, log_dir: Path, timeout: float,
               children: ChildGroups, env: Mapping[str, str] | None = None,
               label: str = "check", contained: Callable | None = None) -> list[CheckResult]:
    """Run every command (stopping at the first failure) and keep each one's output in a log.

    `contained(args, env)` gives the sandboxed command line (a context manager, as
    `containment.contain`); without it the commands run as they are.
    """
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    results = []
    for index, command in enumerate(commands, 1):
        log = log_dir / f"{label}-{index}.log"
        args, full_env = ["bash", "-c", command], {**os.environ, **(env or {})}
        with (contained(args, full_env) if contained else nullcontext((args, full_env))) as (args, full_env):
            finished, output = children.run(args, cwd=cwd, env=full_env, timeout=timeout)
        note = f"\n[timed out after {timeout:.0f} s]\n" if finished.timed_out else ""
        output = redact.text(output)  # before the tail is cut: no half secret is left in it
        private.write_text(log, f"$ {command}\n{output}{note}[exit {finished.exit_code}]\n")
        result = CheckResult(command, finished.exit_code, finished.timed_out,
                             round(finished.duration, 3), str(log), (output + note)[-TAIL_CHARS:])
        results.append(result)
        if not result.passed:
            break
    return results


def all_passed(results: Sequence[CheckResult]) -> bool:
    return all(r.passed for r in results)


def describe_failure(results: Sequence[CheckResult]) -> str:
    """The first failed check: its command, how it ended and its most telling line (the one
    line a status table shows), then the tail of its output (what a fix round reads)."""
    for result in results:
        if not result.passed:
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            return f"`{result.command}` {why}: {telling_line(result.tail)}\n{result.tail}"
    return ""


_SUMMARY = re.compile(r"^=*\s*(\d+ (failed|passed|errors?|skipped|xfailed|xpassed|deselected|warnings?)\b.*?)\s*=*$")


def telling_line(output: str) -> str:
    """Pytest's summary ("1 failed, 3 passed in 0.2s"), else the last non-empty line that is
    not our own timeout note, else "no output"."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip() and not line.startswith("[timed out after ")]
    for line in reversed(lines):
        match = _SUMMARY.match(line)
        if match:
            return match.group(1)
    return lines[-1][:200] if lines else "no output"
