#!/usr/bin/env python3
"""Daemon benchmark: the idle CPU of `claw up`, and how soon a webhook task starts.

    python bench/daemon.py              # 30 s idle window
    python bench/daemon.py --quick      # 10 s
    python bench/daemon.py --json

1. idle CPU: `python -m clawfleet up` on a fresh repository with the webhook on and nothing
   queued; after a 3 s warm-up, the CPU time (user + system, from /proc/PID/stat) it uses over
   the window, as a share of one core. Target: under 2 %.
2. webhook to start: POST /tasks to the running daemon, then the time until the task's attempt
   is recorded as started (`attempt.started` event), median of 5 (a `command` agent that exits
   at once). Information only: the webhook wakes the daemon's loop, which then starts the task.

Real processes, real HTTP on 127.0.0.1, real SQLite; no network beyond loopback.
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
import time
from pathlib import Path

try:
    import clawfleet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx

from clawfleet import git
from clawfleet.daemon import running_daemon
from clawfleet.project import Project, initialize

os.environ.update({"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                   "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})
IDLE_TARGET = 0.02


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.01)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    window = args.seconds or (10.0 if args.quick else 30.0)
    folder = Path(tempfile.mkdtemp(prefix="claw-bench-daemon-"))
    daemon = None
    try:
        repo = folder / "repo"
        git.init_repo(repo, {"README.md": "# bench\n"})
        initialize(repo)
        agent = folder / "agent.sh"
        agent.write_text("#!/usr/bin/env bash\necho done > \"out-$CLAW_TASK_ID.txt\"\n")
        agent.chmod(0o755)
        config = repo / ".claw" / "config.toml"
        config.write_text(config.read_text().replace('default_agent = "builtin"', 'default_agent = "quick"')
                          + f'\n[agents.quick]\nkind = "command"\ncommand = ["{agent}"]\n'
                          '[webhook]\nenabled = true\nport = 0\n')
        daemon = subprocess.Popen([sys.executable, "-m", "clawfleet", "up"], cwd=repo,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        info = wait_for(lambda: running_daemon(repo / ".claw" / "run"))
        time.sleep(3)
        before, started = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(window)
        idle = (cpu_seconds(daemon.pid) - before) / (time.monotonic() - started)

        project = Project(repo)
        token = (repo / ".claw" / "run" / "webhook.token").read_text().strip()
        latencies = []
        for number in range(5):
            posted = time.time()
            reply = httpx.post(info.webhook + "/tasks", json={"title": f"task {number}", "importance": "low"},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            event = wait_for(lambda: [e for e in project.store.events(task_id=reply["id"])
                                      if e["kind"] == "attempt.started"])
            latencies.append(event[0]["at"] - posted)
            wait_for(lambda: project.store.get_task(reply["id"]).state == "merged")
        figures = {"idle_cpu_share": round(idle, 4), "idle_window_s": window,
                   "webhook_to_start_ms_p50": round(statistics.median(latencies) * 1000, 1),
                   "webhook_to_start_ms_max": round(max(latencies) * 1000, 1),
                   "idle_target_met": idle < IDLE_TARGET}
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"idle CPU of claw up: {figures['idle_cpu_share']:.2%} of a core over {window:.0f} s "
          f"(target < {IDLE_TARGET:.0%})")
    print(f"webhook POST /tasks to attempt started: p50 {figures['webhook_to_start_ms_p50']:.0f} ms, "
          f"max {figures['webhook_to_start_ms_max']:.0f} ms")


if __name__ == "__main__":
    main()
