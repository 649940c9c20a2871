"""Watchers: a command run every `interval` seconds; when it fires, a task and/or a notification.

A watcher fires `on`:
- "change": its output differs from the last run's (the first run only records it);
- "fail": it exits non-zero (or times out) after a run that did not, so a command that stays
  red fires once, not every interval;
- "match": its output matches `pattern` and is not the output it last fired for.

What it last saw (a hash of the output, whether it failed) is kept in the store and moved in
the same transaction as the task and notification it fires, so a restart does not fire again
for output it has already seen, and a crash cannot fire twice.

    watchers = Watchers(project, project.config.watcher)
    watchers.run_due()   # -> the firings of this round
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import WatcherConfig
from .git import slugify
from .models import Notification
from .procs import ChildGroups
from .project import Project

OUTPUT_CHARS = 2000


@dataclass
class Firing:
    watcher: str
    reason: str
    output: str
    task_id: int | None = None


def key_of(watcher: WatcherConfig) -> str:
    return f"watcher:{watcher.name}"


def fires(watcher: WatcherConfig, state: dict | None, digest: str, failed: bool, output: str) -> str | None:
    """Why this run fires the watcher, given what it saw last time (`state`), or None."""
    if watcher.on == "change":
        if state is not None and state.get("digest") != digest:
            return "its output changed"
    elif watcher.on == "fail":
        if failed and not (state or {}).get("failed"):
            return "it failed"
    elif re.search(watcher.pattern or "", output, re.MULTILINE) and (state or {}).get("fired_digest") != digest:
        return f"its output matches /{watcher.pattern}/"
    return None


class Watchers:
    def __init__(self, project: Project, watchers: Sequence[WatcherConfig], *,
                 store=None, clock: Callable[[], float] = time.time,
                 wants_notification: Callable[[str], bool] = lambda kind: True,
                 stopping: threading.Event | None = None) -> None:
        self.project = project
        self.stopping = stopping     # set when the daemon stops: a command it kills fires nothing
        self.store = store or project.store
        self.watchers = list(watchers)
        self.clock = clock
        self.wants_notification = wants_notification
        self._children: dict[str, ChildGroups] = {}

    def run_due(self) -> list[Firing]:
        """Run every watcher whose interval has passed since its last run."""
        firings = []
        for watcher in self.watchers:
            state = self.store.daemon_state(key_of(watcher))
            if state is not None and self.clock() - state.get("ran_at", 0) < watcher.interval:
                continue
            firing = self.run_one(watcher, state)
            if firing:
                firings.append(firing)
        return firings

    def run_one(self, watcher: WatcherConfig, state: dict | None = None) -> Firing | None:
        (self.project.run_dir / "watchers").mkdir(parents=True, exist_ok=True)
        # Each watcher's own record of its process groups: the daemon runs each in its own thread.
        children = self._children.setdefault(watcher.name, ChildGroups(
            self.project.run_dir / "watchers" / f"{_file_name(watcher.name)}.children"))
        finished, output = children.run(["bash", "-c", watcher.command], cwd=self.project.root,
                                         env=dict(os.environ), timeout=watcher.timeout)
        if self.stopping is not None and self.stopping.is_set():
            return None  # killed by the daemon's stop: not a failure, nothing seen
        failed = finished.exit_code != 0 or finished.timed_out
        if finished.timed_out:
            output += f"\n[timed out after {watcher.timeout:g} s]"
        digest = hashlib.sha256(output.encode()).hexdigest()
        reason = fires(watcher, state, digest, failed, output)
        new_state = {"ran_at": self.clock(), "digest": digest, "failed": failed,
                     "exit_code": finished.exit_code,
                     "fired_digest": digest if reason else (state or {}).get("fired_digest")}
        if reason is None:
            self.store.set_daemon_state(key_of(watcher), new_state)
            return None
        shown = _tail(output)
        summary = f"watcher '{watcher.name}' fired: {reason} (exit {finished.exit_code})\n{shown}".strip()
        notification = (Notification("watcher", summary, watcher.importance, at=self.clock())
                        if watcher.notify and self.wants_notification("watcher") else None)
        task = None
        if watcher.task is not None:
            task = watcher.task.model_dump()
            task["body"] = (task["body"] + "\n\n" if task["body"] else "") + \
                f"The watcher '{watcher.name}' (`{watcher.command}`) fired: {reason}, exit " \
                f"{finished.exit_code}. Its output:\n\n```\n{shown}\n```"
        ids = self.store.fire_trigger(key_of(watcher), state, new_state, event="watcher.fired",
                                      tasks=[task] if task else [], notification=notification,
                                      watcher=watcher.name, reason=reason, exit_code=finished.exit_code)
        if ids is None:
            return None  # another process recorded this run first
        return Firing(watcher.name, reason, shown, ids[0] if ids else None)


def stop_all(run_dir: Path) -> None:
    """Kill every watcher's command still running (the daemon stops)."""
    for path in (run_dir / "watchers").glob("*.children"):
        ChildGroups(path).kill_all()


def _file_name(name: str) -> str:
    """A file name for any watcher name: readable, and distinct for distinct names."""
    return f"{slugify(name) or 'watcher'}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _tail(output: str) -> str:
    output = output.strip()
    return output if len(output) <= OUTPUT_CHARS else "[...]\n" + output[-OUTPUT_CHARS:]
