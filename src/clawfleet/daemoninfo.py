"""Who the claw daemon running for a repository is: `daemon.json` in its run folder.

Its own module so that the orchestrator's lock can say the daemon holds it without importing the
daemon, which imports the orchestrator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import cmdline, pid_alive

INFO_FILE = "daemon.json"


@dataclass
class DaemonInfo:
    pid: int
    started_at: float
    log: str | None = None
    webhook: str | None = None

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - self.started_at)


def running_daemon(run_dir: Path) -> DaemonInfo | None:
    """The daemon running for this repository, or None (a stale daemon.json is ignored)."""
    try:
        info = DaemonInfo(**json.loads((run_dir / INFO_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    args = cmdline(info.pid)
    if not pid_alive(info.pid) or not any("clawfleet" in a or a.endswith("claw") for a in args):
        return None  # it died without cleaning up, and the pid may belong to someone else now
    return info
