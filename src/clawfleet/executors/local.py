"""Local executor: each attempt is a detached runner process that outlives the orchestrator.

The runner leads its own process group (so a timeout kills everything it started) and writes its
pid and status into the attempt folder; after a restart we find it there and either wait for it
(reattach) or read its result (collect).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..procs import ChildGroups, cmdline, kill_group, pid_alive
from ..runner import AttemptStatus

RUNNER_MODULE = "clawfleet.runner"


@dataclass
class Running:
    """The attempt's runner is alive."""


class LocalExecutor:
    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    def start(self, attempt_id: int, attempt_dir: Path, cwd: Path) -> int:
        with open(attempt_dir / "runner.out", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", RUNNER_MODULE, str(attempt_dir)],
                                    cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._children[attempt_id] = proc
        return proc.pid

    def poll(self, attempt_id: int, attempt_dir: Path, pid: int | None) -> AttemptStatus | Running | None:
        """The runner's status when it has ended; `Running` while it lives; None if it died silently."""
        proc = self._children.get(attempt_id)
        if proc is not None:
            if proc.poll() is None:
                return Running()
            del self._children[attempt_id]
        elif self.is_our_runner(pid, attempt_dir):
            return Running()
        return AttemptStatus.read(attempt_dir)

    @staticmethod
    def is_our_runner(pid: int | None, attempt_dir: Path) -> bool:
        """True when `pid` is alive and is the runner of this attempt (pids get reused)."""
        if not pid_alive(pid):
            return False
        args = cmdline(pid)
        return RUNNER_MODULE in args and str(attempt_dir) in args

    def stop(self, attempt_id: int, attempt_dir: Path, pid: int | None) -> None:
        """Kill the runner's process group and every group it recorded for its children."""
        proc = self._children.get(attempt_id)
        if pid and (proc is not None or self.is_our_runner(pid, attempt_dir)):
            kill_group(pid, reap=proc.poll if proc is not None else None)
        proc = self._children.pop(attempt_id, None)
        if proc is not None:
            proc.wait(timeout=10)
        ChildGroups(attempt_dir / "children").kill_all()
