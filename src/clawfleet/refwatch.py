"""The ref watch: what an unsandboxed agent could change in the person's repository behind
clawfleet's back, noticed and reported.

In the sandbox the common git dir is read-only, so no agent can move a ref. Where agents run
unsandboxed (`[sandbox] enabled = false`, or "auto" without bwrap), the orchestrator looks, each
tick while attempts run, at the target branch, the `claw/*` branches, the hooks and the
repository's config. A look is a handful of `lstat`s (`git.watch_stamp`); only when that changed
does git list the refs and hooks are hashed. Each change is then judged by the reflog, which
says who moved a ref and how when git wrote one:

- the merge queue's landings (`claw: land`) and clawfleet's own commits and branches: not news;
- the person's own commits on the target (`commit:`, `merge`, `pull`, `rebase`...): normal, an
  event saying so, no alarm;
- anything else (a reset, `update-ref`, a ref written with no reflog entry, a hook, a config
  key): an alarm — an event, a line in `claw status`, a notification. Nothing is undone: the
  person decides.

    watch = RefWatch(project, attempts_ran=True)
    if watch.due():
        for change in watch.look(active=True):
            print(change.describe())
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import git
from .project import Project

ALARM = "security.refs_changed"
NORMAL = "refs.moved"
QUARANTINED = "workspace.quarantined"
SHOWN_FOR_S = 24 * 3600.0         # how long `claw status` keeps showing an alarm
# Reflog subjects of the person's own work on the target branch.
PERSON_WORK = ("commit", "merge", "pull", "rebase", "cherry-pick", "revert", "am")
# ...and of what clawfleet itself writes on `claw/*` branches (pool hand-outs, the runner's commits).
OURS = ("clawfleet", git.LANDING, "claw ", "branch: Created from", "branch: Reset to")


@dataclass
class Snapshot:
    refs: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class Change:
    what: str                  # "ref", "hook" or "config"
    name: str                  # refs/heads/main, hooks/post-merge, core.fsmonitor
    old: str | None
    new: str | None
    by: str = ""               # what the reflog says, or why nothing does
    alarm: bool = True

    def describe(self) -> str:
        if self.what == "ref":
            short = self.name.removeprefix("refs/heads/")
            what = (f"{short} was deleted (it was at {self.old[:10]})" if self.new is None else
                    f"{short} was created at {self.new[:10]}" if self.old is None else
                    f"{short} moved {self.old[:10]} -> {self.new[:10]}")
        elif self.what == "hook":
            what = (f"hook {self.name} was removed" if self.new is None else
                    f"hook {self.name} was installed" if self.old is None else f"hook {self.name} was changed")
        else:
            what = (f"config {self.name} was removed" if self.new is None else
                    f"config {self.name} was added" if self.old is None else f"config {self.name} was changed")
        if not self.alarm:
            return f"{what}: {self.by} (normal)"
        return (f"{what} while unsandboxed agents ran, not by clawfleet"
                + (f" ({self.by})" if self.by else "") + "; nothing was undone, look at it")


class RefWatch:
    """Report changes to the target, `claw/*`, hooks and config (see the module's docstring)."""

    def __init__(self, project: Project, *, attempts_ran: bool, interval: float = 0.2,
                 clock=time.monotonic) -> None:
        """`attempts_ran`: attempts were running when the watch starts, so they ran while no
        orchestrator looked (it was killed, or between runs): what changed since the last look
        of an earlier watch is reported at the first look."""
        self.project = project
        self.target = project.config.fleet.target
        self.refs = [f"refs/heads/{self.target}", "refs/heads/claw"]
        self.interval = interval
        self.clock = clock
        self._looked_at = float("-inf")
        self._was_active = attempts_ran
        self._stamp = git.watch_stamp(project.root, self.refs)
        self._snapshot = self._take()
        earlier = self._load() if attempts_ran else None
        self._missed = self._compare(earlier, self._snapshot) if earlier is not None else []
        self._save()

    def note_activity(self) -> None:
        """An attempt (or a reviewer) just started: the next look compares, even if it has
        ended by then."""
        self._was_active = True

    def due(self) -> bool:
        """Time for a look (at most one every `interval` seconds)."""
        return bool(self._missed) or self.clock() - self._looked_at >= self.interval

    @property
    def path(self) -> Path:
        return self.project.run_dir / "refwatch.json"

    def look(self, active: bool) -> list[Change]:
        """Compare with the last look; `active`: attempts are running (or were at the last look).
        Changes while nothing ran are the person's own, taken in silently."""
        changes, self._missed = self._missed, []
        self._looked_at = self.clock()
        stamp = git.watch_stamp(self.project.root, self.refs)
        if stamp != self._stamp:
            snapshot = self._take()
            if active or self._was_active:
                changes += self._compare(self._snapshot, snapshot)
            self._stamp, self._snapshot = stamp, snapshot
            self._save()
        self._was_active = active
        for change in changes:
            self.project.store.record_event(ALARM if change.alarm else NORMAL, summary=change.describe(),
                                            **asdict(change))
        return changes

    def _take(self) -> Snapshot:
        root = self.project.root
        return Snapshot(git.ref_values(root, self.refs), git.hook_digests(root), git.config_digests(root))

    def _compare(self, before: Snapshot, after: Snapshot) -> list[Change]:
        changes = []
        for ref in sorted(set(before.refs) | set(after.refs)):
            old, new = before.refs.get(ref), after.refs.get(ref)
            if old != new:
                change = self._judge_ref(ref, old, new)
                if change is not None:
                    changes.append(change)
        for name in sorted(set(before.hooks) | set(after.hooks)):
            if before.hooks.get(name) != after.hooks.get(name):
                changes.append(Change("hook", name, before.hooks.get(name), after.hooks.get(name),
                                      "git runs hooks in your own checkout"))
        for key in sorted(set(before.config) | set(after.config)):
            if before.config.get(key) != after.config.get(key):
                changes.append(Change("config", key, before.config.get(key), after.config.get(key)))
        return changes

    def _judge_ref(self, ref: str, old: str | None, new: str | None) -> Change | None:
        """None when clawfleet made the change itself; otherwise who did, by the reflog."""
        on_target = ref == f"refs/heads/{self.target}"
        if not on_target and (old is None or new is None):
            return None  # clawfleet makes and deletes claw/* branches all the time
        entry = git.last_reflog_entry(self.project.root, ref) if new is not None else None
        if entry is None or entry.new != new:
            by = "the reflog has no entry for it: written behind git's back" if new is not None else ""
            return Change("ref", ref, old, new, by)
        by = f"reflog: '{entry.message[:120]}' by {entry.who}"
        if entry.message.startswith(OURS if not on_target else (git.LANDING,)):
            return None
        if entry.message.startswith(PERSON_WORK):
            whose = "your own work" if on_target else "the agent's own commit on its branch"
            return Change("ref", ref, old, new, f"{by}: {whose}", alarm=False)
        return Change("ref", ref, old, new, by)

    def _load(self) -> Snapshot | None:
        try:
            return Snapshot(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self._snapshot)))
        tmp.replace(self.path)


def status_lines(project: Project, now: float | None = None) -> list[str]:
    """What `claw status` says about security: alarms of the ref watch and quarantined
    workspaces of the last day, newest first."""
    since = (now or time.time()) - SHOWN_FOR_S
    events = project.store.events(kinds=[ALARM, QUARANTINED], since=since)
    lines = []
    for event in reversed(events[-5:]):
        data = event["data"]
        if event["kind"] == ALARM:
            lines.append(data.get("summary", ""))
        else:
            where = f"task {event['task_id']} " if event.get("task_id") else ""
            lines.append(f"{where}attempt {event['attempt_id']}: workspace {data.get('workspace')} "
                         f"quarantined: {(data.get('reason') or '')[:240]}")
    return lines
