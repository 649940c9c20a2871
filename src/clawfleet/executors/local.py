"""Local executor: each attempt is a detached runner process that outlives the orchestrator.

The runner leads its own process group (so a timeout kills everything it started) and writes its
pid and status into the attempt folder; after a restart we find it there and either wait for it
(reattach) or read its result (collect). Runners are forked from a warm zygote process (see
`zygote.py`); when that cannot be done, they are started as `python -m clawfleet.runner`.
Either way `runner.id` in the attempt folder holds the runner's pid and start time, which tell
it apart from whatever process gets its pid later.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..procs import ChildGroups, ExitWatcher, cmdline, is_process, kill_group, pid_alive, start_time
from ..runner import AttemptStatus
from .zygote import Zygote

RUNNER_MODULE = "clawfleet.runner"
IDENTITY_FILE = "runner.id"


@dataclass
class Running:
    """The attempt's runner is alive."""


class LocalExecutor:
    def __init__(self, fork: bool = True, zygote_log: Path | None = None,
                 on_exit: Callable[[], None] | None = None) -> None:
        """`on_exit` is called (from another thread) as soon as a runner ends: time to poll."""
        self._children: dict[int, subprocess.Popen] = {}   # runners started as new processes
        self._identities: dict[int, tuple[int, int | None]] = {}
        self.zygote = Zygote(zygote_log) if fork and Path("/proc/self/stat").exists() else None
        self._exits = ExitWatcher(on_exit) if on_exit else None

    def start(self, attempt_id: int, attempt_dir: Path, cwd: Path) -> int:
        forked = self.zygote.fork(attempt_dir, cwd) if self.zygote else None
        if forked is not None:
            pid, started = forked
        else:
            with open(attempt_dir / "runner.out", "ab") as out:
                # -P: not the worktree (its cwd) first on sys.path, or a module the agent wrote
                # there would be imported by the runner, unsandboxed (a fix round's jinja2).
                proc = subprocess.Popen([sys.executable, "-P", "-m", RUNNER_MODULE, str(attempt_dir)],
                                        cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            self._children[attempt_id] = proc
            pid, started = proc.pid, start_time(proc.pid)
        (attempt_dir / IDENTITY_FILE).write_text(f"{pid} {started}\n")
        self._identities[attempt_id] = (pid, started)
        if self._exits:
            self._exits.watch(pid)
        return pid

    def warm(self) -> None:
        """Get the zygote going now, so the first runner does not wait for its imports."""
        if self.zygote:
            self.zygote.warm()

    def close(self) -> None:
        """Stop the zygote (the runners it forked go on)."""
        if self.zygote:
            self.zygote.close()

    def poll(self, attempt_id: int, attempt_dir: Path, pid: int | None) -> AttemptStatus | Running | None:
        """The runner's status when it has ended; `Running` while it lives; None if it died silently."""
        proc = self._children.get(attempt_id)
        pid = pid or _recorded_pid(attempt_dir)
        if proc is not None:
            if proc.poll() is None:
                return Running()
            del self._children[attempt_id]
        elif self.is_our_runner(pid, attempt_dir, self._identities.get(attempt_id)):
            if self._exits and attempt_id not in self._identities:  # reattached after a restart
                self._identities[attempt_id] = _recorded_identity(attempt_dir) or (pid, start_time(pid))
                self._exits.watch(pid)
            return Running()
        self._identities.pop(attempt_id, None)
        return AttemptStatus.read(attempt_dir)

    @staticmethod
    def is_our_runner(pid: int | None, attempt_dir: Path,
                      identity: tuple[int, int | None] | None = None) -> bool:
        """True when `pid` is alive and is the runner of this attempt (pids get reused)."""
        identity = identity or _recorded_identity(attempt_dir)
        if identity is not None and identity[1] is not None:
            return identity[0] == pid and is_process(pid, identity[1])
        if not pid_alive(pid):
            return False
        args = cmdline(pid)  # started before runner.id existed, or no start time to be had
        return RUNNER_MODULE in args and str(attempt_dir) in args

    def stop(self, attempt_id: int, attempt_dir: Path, pid: int | None) -> None:
        """Kill the runner's process group and every group it recorded for its children."""
        proc = self._children.get(attempt_id)
        pid = pid or _recorded_pid(attempt_dir)
        if pid and (proc is not None or self.is_our_runner(pid, attempt_dir, self._identities.get(attempt_id))):
            kill_group(pid, reap=proc.poll if proc is not None else None)
        proc = self._children.pop(attempt_id, None)
        if proc is not None:
            proc.wait(timeout=10)
        self._identities.pop(attempt_id, None)
        ChildGroups(attempt_dir / "children").kill_all()


def runner_began(attempt_dir: Path) -> bool:
    """Whether a runner was ever started for this attempt folder: the executor records it right
    after the fork, and the runner writes its own pid first thing."""
    return any((attempt_dir / name).exists() for name in (IDENTITY_FILE, "runner.pid", "status.json"))


def _recorded_pid(attempt_dir: Path) -> int | None:
    """The runner's pid from its attempt folder, for an attempt whose store row has none yet
    (the orchestrator died between starting the runner and recording it)."""
    identity = _recorded_identity(attempt_dir)
    return identity[0] if identity else None


def _recorded_identity(attempt_dir: Path) -> tuple[int, int | None] | None:
    try:
        pid, started = (attempt_dir / IDENTITY_FILE).read_text().split()
        return int(pid), None if started == "None" else int(started)
    except (OSError, ValueError):
        return None
