"""SQLite store: the single source of truth for tasks, attempts and events.

WAL mode so readers never block the writer; `BEGIN IMMEDIATE` so concurrent writers queue on
the busy timeout instead of failing; every state change is written with its event in one
transaction. Schema changes are numbered files in `migrations/`, applied by `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from . import disk
from .errors import ClawError, NotFound, StoreBusy, StoreDamaged
from .models import (
    GAVE_UP,
    LANDED,
    RUN_OUTCOMES,
    Attempt,
    AttemptState,
    Experiment,
    ExperimentStatus,
    Importance,
    LlmCall,
    Note,
    Notification,
    ResearchRun,
    Task,
    TaskState,
    can_transition,
)

BUSY_TIMEOUT_S = 30.0


def _migrations() -> list[tuple[int, str]]:
    files = resources.files("clawfleet") / "migrations"
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _env_busy_timeout() -> float:
    """CLAW_BUSY_TIMEOUT (seconds) overrides how long a writer waits for the database."""
    try:
        return float(os.environ.get("CLAW_BUSY_TIMEOUT", BUSY_TIMEOUT_S))
    except ValueError:
        return BUSY_TIMEOUT_S


def _private_file(path: Path) -> None:
    """The database private to its user: 0600 in a 0700 folder (SQLite gives its -wal and -shm
    files the database file's mode). Made so before SQLite opens it."""
    from . import private

    private.folder(path.parent)
    # Never open a database file that exists: closing any descriptor of it drops the POSIX locks
    # SQLite holds on it in this process (another Store's, another thread's).
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private.FILE_MODE))
        except OSError:
            pass  # made meanwhile, or a read-only place: SQLite will say what is wrong
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        private.narrow(name)


def damaged(path: Path, problem: str) -> StoreDamaged:
    """The error for a corrupt store, with the way back: what SQLite can still read, recovered
    into a new file that takes the damaged one's place (kept beside it)."""
    return StoreDamaged(
        f"the store {path} is damaged ({problem}); clawfleet writes nothing more into it",
        hint=f"with no claw process running: sqlite3 {path} .recover | sqlite3 {path}.recovered "
             f"&& mv {path} {path}.damaged && rm -f {path}-wal {path}-shm && mv {path}.recovered {path}")


def _refuse_emptied(path: Path) -> None:
    """A zero-length store in a folder where attempts ran was emptied (a full disk, a bad
    copy), not never made: starting afresh there would forget every task silently."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        return
    if empty and (path.parent / "attempts").is_dir() and not path.with_name(path.name + "-wal").exists():
        raise StoreDamaged(f"the store {path} is empty, but attempts ran here ({path.parent / 'attempts'})",
                           hint=f"put back a copy of {path} if you have one; to start afresh, "
                                f"move {path} away (the attempt folders stay)")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


class _Redacting:
    """A write transaction's connection: every text written goes through the redactor first, so
    no table ever holds a known secret value, whoever wrote the row (see redact.py). Only
    known values are replaced, never key-like formats: branch names and paths stay exact."""

    def __init__(self, db: sqlite3.Connection) -> None:
        from . import redact

        self._db = db
        self._clean = redact.current().known

    def _params(self, params: Any) -> Any:
        if isinstance(params, dict):
            return {k: self._clean(v) if isinstance(v, str) else v for k, v in params.items()}
        return [self._clean(v) if isinstance(v, str) else v for v in params]

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, self._params(params) if params else params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self._db.executemany(sql, (self._params(row) for row in rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class Store:
    """Open (and migrate) the database at `path`.

    >>> store = Store(Path(".claw/run/claw.db"))
    >>> task = store.add_task("Add a slugify helper", importance=Importance.low)
    """

    def __init__(self, path: Path, busy_timeout: float | None = None) -> None:
        if busy_timeout is None:
            busy_timeout = _env_busy_timeout()
        self.path = path
        self.full = False   # the disk is full: opened read-only, every write says so
        _refuse_emptied(path)
        # A -wal file left when no process has the store open means the last writer stopped
        # uncleanly (a clean close checkpoints and removes it): check the pages before the first
        # write, so a damaged store is not written deeper into. Another claw process may hold it
        # open too; the check is then merely early (milliseconds on a store of this size).
        self._check_before_writing = path.with_name(path.name + "-wal").exists()
        _private_file(path)
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                raise StoreBusy(f"the database {path} stayed locked for {busy_timeout:g} s",
                                hint="another claw process holds it; retry when it is done") from error
            if disk.full_disk_of(error, path) is None or not path.exists():
                raise
            self._open_read_only()
        except sqlite3.DatabaseError as error:
            if "malformed" in str(error):
                raise damaged(path, str(error)) from None
            raise ClawError(f"{path} is not a clawfleet database ({error})",
                            hint="move it away; clawfleet makes a new one") from None

    def _open_read_only(self) -> None:
        """On a full disk SQLite cannot make the WAL's index file, so nothing could even be read:
        read the database file as it is (what a writer has not checkpointed yet is not seen)."""
        self._db.close()
        self.full = True
        self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                   isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so writers queue instead of deadlocking."""
        if self.full:
            raise disk.DiskFull(self.path.parent)
        if self._check_before_writing:
            self.check()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                raise StoreBusy(f"the database {self.path} is busy",
                                hint="another claw process is writing; retry in a moment") from error
            raise self._full_or(error) from None
        try:
            yield _Redacting(self._db)
        except BaseException as error:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                self._db.execute("ROLLBACK")
            if disk.full_disk_of(error, self.path):
                raise disk.DiskFull(self.path.parent) from None
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._full_or(error) from None

    def _full_or(self, error: BaseException) -> BaseException:
        return disk.DiskFull(self.path.parent) if disk.full_disk_of(error, self.path) else error

    def check(self) -> None:
        """Raise StoreDamaged unless SQLite's `quick_check` finds every page sound."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise damaged(self.path, problems[0])
        self._check_before_writing = False

    def _migrate(self) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        version = self.schema_version
        if version > latest:
            raise ClawError(f"{self.path} was written by a newer clawfleet (schema {version}, "
                            f"this one knows {latest})", hint="upgrade clawfleet: pip install -U clawfleet")
        if version == latest:
            return  # reading needs no write lock
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, sql in migrations:
                if number > version:
                    for statement in _split_sql(sql):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _event(self, db: sqlite3.Connection, kind: str, *, task_id: int | None = None,
               attempt_id: int | None = None, **data: Any) -> None:
        db.execute("INSERT INTO events (at, task_id, attempt_id, kind, data) VALUES (?, ?, ?, ?, ?)",
                   (time.time(), task_id, attempt_id, kind, json.dumps(data, default=str)))

    def record_event(self, kind: str, *, task_id: int | None = None,
                     attempt_id: int | None = None, **data: Any) -> None:
        with self.transaction() as db:
            self._event(db, kind, task_id=task_id, attempt_id=attempt_id, **data)

    # -- tasks ----------------------------------------------------------------------------

    def add_task(self, title: str, *, body: str = "", kind: str = "feature", agent: str | None = None,
                 priority: int = 0, importance: Importance = Importance.normal,
                 footprint: Sequence[str] = (), checks: Sequence[str] = (),
                 depends_on: Sequence[int] = (), best_of: int = 1, agents: Sequence[str] = (),
                 model: str | None = None, effort: str | None = None, resolves: int | None = None,
                 **data: Any) -> Task:
        """Queue a task; `data` goes into its `task.added` event (e.g. who asked: source="webhook").

        `resolves`: the bounced task whose conflict this one resolves (it closes when this lands)."""
        with self.transaction() as db:
            task_id = self._insert_task(db, title, body=body, kind=kind, agent=agent, priority=priority,
                                        importance=importance, footprint=footprint, checks=checks,
                                        depends_on=depends_on, best_of=best_of, agents=agents,
                                        model=model, effort=effort, **data)
            if resolves is not None:
                db.execute("UPDATE tasks SET resolves = ? WHERE id = ?", (resolves, task_id))
        return self.get_task(task_id)

    def _insert_task(self, db: sqlite3.Connection, title: str, *, body: str = "", kind: str = "feature",
                     agent: str | None = None, priority: int = 0,
                     importance: Importance | str = Importance.normal, footprint: Sequence[str] = (),
                     checks: Sequence[str] = (), depends_on: Sequence[int] = (), best_of: int = 1,
                     agents: Sequence[str] = (), model: str | None = None, effort: str | None = None,
                     **data: Any) -> int:
        now = time.time()
        for dep in depends_on:
            if db.execute("SELECT 1 FROM tasks WHERE id = ?", (dep,)).fetchone() is None:
                raise NotFound(f"task {dep} does not exist (given to --depends)",
                               hint="`claw status` lists the task ids")
        cursor = db.execute(
            "INSERT INTO tasks (title, body, kind, agent, priority, importance, footprint, checks,"
            " best_of, agents, model, effort, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (title, body, kind, agent, priority, str(importance), json.dumps(list(footprint)),
             json.dumps(list(checks)), best_of, json.dumps(list(agents)), model, effort, now, now))
        task_id = cursor.lastrowid
        db.executemany("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?)",
                       [(task_id, dep) for dep in dict.fromkeys(depends_on)])
        self._event(db, "task.added", task_id=task_id, title=title, **data)
        self._follow_dependencies(db, task_id)  # a dependency that already gave up blocks it now
        return task_id

    def get_task(self, task_id: int) -> Task:
        row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no task {task_id}", hint="`claw status` lists the task ids")
        return self._task(row)

    def list_tasks(self, states: Sequence[TaskState] | None = None) -> list[Task]:
        if states:
            marks = ",".join("?" * len(states))
            rows = self._db.execute(f"SELECT * FROM tasks WHERE state IN ({marks}) ORDER BY id",
                                    [str(s) for s in states]).fetchall()
        else:
            rows = self._db.execute("SELECT * FROM tasks ORDER BY id").fetchall()
        return [self._task(row) for row in rows]

    def _task(self, row: sqlite3.Row) -> Task:
        deps = [r[0] for r in self._db.execute(
            "SELECT depends_on FROM task_deps WHERE task_id = ? ORDER BY depends_on", (row["id"],))]
        return Task(id=row["id"], title=row["title"], body=row["body"], kind=row["kind"],
                    agent=row["agent"], priority=row["priority"],
                    importance=Importance(row["importance"]), state=TaskState(row["state"]),
                    footprint=json.loads(row["footprint"]), checks=json.loads(row["checks"]),
                    depends_on=deps, feedback=row["feedback"], reason=row["reason"],
                    created_at=row["created_at"], updated_at=row["updated_at"],
                    best_of=row["best_of"], agents=json.loads(row["agents"]),
                    model=row["model"], effort=row["effort"], resolves=row["resolves"],
                    resolved_by=self._db.execute("SELECT MAX(id) FROM tasks WHERE resolves = ?",
                                                 (row["id"],)).fetchone()[0],
                    merge_wait=row["merge_wait"])

    def move_task(self, task_id: int, new: TaskState, event: str, *, reason: str | None = None,
                  feedback: str | None = None, expect: Sequence[TaskState] | None = None,
                  **data: Any) -> Task:
        """Change a task's state and record why, in one transaction.

        `expect` narrows the states the change is valid from (for compare-and-set use);
        the allowed transitions of `models.TASK_TRANSITIONS` always apply.
        """
        with self.transaction() as db:
            self._move_task(db, task_id, new, event, reason=reason, feedback=feedback,
                            expect=expect, **data)
        return self.get_task(task_id)

    def _move_task(self, db: sqlite3.Connection, task_id: int, new: TaskState, event: str, *,
                   reason: str | None = None, feedback: str | None = None,
                   expect: Sequence[TaskState] | None = None, **data: Any) -> None:
        row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no task {task_id}", hint="`claw status` lists the task ids")
        current = TaskState(row["state"])
        if (expect is not None and current not in expect) or not can_transition(current, new):
            raise ClawError(f"task {task_id} is {current}; it cannot become {new}",
                            hint=_transition_hint(current))
        db.execute("UPDATE tasks SET state = ?, reason = ?, feedback = COALESCE(?, feedback),"
                   " merge_wait = CASE WHEN ? = 'approved' THEN merge_wait END, updated_at = ? WHERE id = ?",
                   (str(new), reason, feedback, str(new), time.time(), task_id))
        self._event(db, event, task_id=task_id, old=str(current), new=str(new), reason=reason, **data)
        if new == TaskState.merged:
            self._close_resolved(db, task_id)
        if new == TaskState.queued:
            self._follow_dependencies(db, task_id)  # retried while a dependency still gave up
        if new in GAVE_UP or new in LANDED or new in (TaskState.queued, TaskState.blocked):
            for (dependent,) in db.execute("SELECT task_id FROM task_deps WHERE depends_on = ?",
                                           (task_id,)).fetchall():
                self._follow_dependencies(db, dependent)

    def _close_resolved(self, db: sqlite3.Connection, task_id: int) -> None:
        """A resolve task landed: the bounced task it resolves closes, linked both ways."""
        row = db.execute("SELECT t.id, t.state FROM tasks t JOIN tasks r ON r.resolves = t.id"
                         " WHERE r.id = ?", (task_id,)).fetchone()
        if row is not None and row["state"] == TaskState.failed:
            self._move_task(db, row["id"], TaskState.resolved, "task.resolved",
                            reason=f"resolved by task {task_id}", resolved_by=task_id)

    def _resolving(self, db: sqlite3.Connection, task_id: int, state: TaskState) -> str:
        if state != TaskState.failed:
            return ""
        row = db.execute("SELECT MAX(id) FROM tasks WHERE resolves = ?", (task_id,)).fetchone()
        return f" (task {row[0]} resolves its conflict)" if row[0] else ""

    def _follow_dependencies(self, db: sqlite3.Connection, task_id: int) -> None:
        """Block a queued task whose dependency failed, was rejected or cancelled (or is blocked
        itself), saying which; queue it again once none is. Dependents follow in turn."""
        row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None or row["state"] not in (TaskState.queued, TaskState.blocked):
            return
        deps = db.execute("SELECT t.id, t.state FROM task_deps d JOIN tasks t ON t.id = d.depends_on"
                          " WHERE d.task_id = ? ORDER BY t.id", (task_id,)).fetchall()
        stuck = [(dep["id"], TaskState(dep["state"])) for dep in deps
                 if dep["state"] in GAVE_UP or dep["state"] == TaskState.blocked]
        if stuck and row["state"] == TaskState.queued:
            why = {TaskState.failed: "failed", TaskState.rejected: "was rejected",
                   TaskState.cancelled: "was cancelled", TaskState.blocked: "is blocked"}
            reason = "; ".join(f"task {dep} {why[state]}" + self._resolving(db, dep, state)
                               for dep, state in stuck)
            self._move_task(db, task_id, TaskState.blocked, "task.blocked", reason=reason,
                            by=[dep for dep, _ in stuck])
        elif not stuck and row["state"] == TaskState.blocked:
            self._move_task(db, task_id, TaskState.queued, "task.unblocked",
                            reason="its dependencies are back in play")

    def note_task(self, task_id: int, reason: str, event: str, **data: Any) -> None:
        """Change why a task is where it is, without moving it (e.g. a reviewer's comments)."""
        with self.transaction() as db:
            db.execute("UPDATE tasks SET reason = ?, updated_at = ? WHERE id = ?",
                       (reason, time.time(), task_id))
            self._event(db, event, task_id=task_id, reason=reason, **data)

    def set_dependencies(self, task_id: int, depends_on: Sequence[int]) -> Task:
        """Replace what a task that has not started waits for; a dependency dropped that had
        given up unblocks it."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise NotFound(f"there is no task {task_id}", hint="`claw status` lists the task ids")
            if row["state"] not in (TaskState.queued, TaskState.blocked):
                raise ClawError(f"task {task_id} is {row['state']}; only a queued or blocked task's "
                                "dependencies can change", hint=_transition_hint(TaskState(row["state"])))
            for dep in dict.fromkeys(depends_on):
                if db.execute("SELECT 1 FROM tasks WHERE id = ?", (dep,)).fetchone() is None:
                    raise NotFound(f"task {dep} does not exist (given to --on)",
                                   hint="`claw status --all` lists the task ids")
                if dep == task_id or task_id in self._upstream(db, dep):
                    raise ClawError(f"task {task_id} cannot wait for task {dep}: task {dep} waits for it",
                                    hint="a task can only wait for tasks that do not wait for it")
            db.execute("DELETE FROM task_deps WHERE task_id = ?", (task_id,))
            db.executemany("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?)",
                           [(task_id, dep) for dep in dict.fromkeys(depends_on)])
            self._event(db, "task.dependencies", task_id=task_id, depends_on=list(dict.fromkeys(depends_on)))
            self._follow_dependencies(db, task_id)
        return self.get_task(task_id)

    def _upstream(self, db: sqlite3.Connection, task_id: int) -> set[int]:
        """Every task `task_id` waits for, directly or through others."""
        found, todo = set(), [task_id]
        while todo:
            for (dep,) in db.execute("SELECT depends_on FROM task_deps WHERE task_id = ?", (todo.pop(),)):
                if dep not in found:
                    found.add(dep)
                    todo.append(dep)
        return found

    def set_merge_wait(self, task_ids: Sequence[int], reason: str | None) -> None:
        """Why these approved tasks are not landing now (None: nothing holds them)."""
        marks = ",".join("?" * len(task_ids))
        with self.transaction() as db:
            db.execute(f"UPDATE tasks SET merge_wait = ? WHERE state = 'approved' AND id IN ({marks})",
                       [reason, *task_ids])

    def clear_feedback(self, task_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE tasks SET feedback = NULL WHERE id = ?", (task_id,))

    def dependencies_met(self, task: Task) -> bool:
        if not task.depends_on:
            return True
        marks = ",".join("?" * len(task.depends_on))
        merged = self._db.execute(f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks}) AND state IN (?, ?)",
                                  [*task.depends_on, *map(str, LANDED)]).fetchone()[0]
        return merged == len(task.depends_on)

    # -- attempts -------------------------------------------------------------------------

    def start_attempt(self, task_id: int, *, agent: str, branch_for: Any, base_commit: str) -> Attempt:
        """Create the next attempt of a queued task and mark the task running, atomically.

        `branch_for(number)` names the attempt's branch once its number is known.
        Raises ClawError if the task is no longer queued (a cancel or another orchestrator
        got there first), so a task never runs twice at once.
        """
        return self.start_attempts(task_id, agents=[agent], branch_for=branch_for, base_commit=base_commit)[0]

    def start_attempts(self, task_id: int, *, agents: Sequence[str], branch_for: Any,
                       base_commit: str) -> list[Attempt]:
        """`start_attempt` for several attempts at once (best-of-N), one per agent given.

        They share one start time, which is what makes them siblings (see `siblings`).
        """
        now = time.time()
        ids = []
        with self.transaction() as db:
            first = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE task_id = ?",
                               (task_id,)).fetchone()[0]
            self._move_task(db, task_id, TaskState.running, "task.started",
                            expect=[TaskState.queued], attempt=first, agent=agents[0],
                            **({"best_of": len(agents), "agents": list(agents)} if len(agents) > 1 else {}))
            for number, agent in enumerate(agents, start=first):
                branch = branch_for(number)
                cursor = db.execute(
                    "INSERT INTO attempts (task_id, number, agent, state, branch, base_commit, started_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (task_id, number, agent, str(AttemptState.running), branch, base_commit, now))
                ids.append(cursor.lastrowid)
                self._event(db, "attempt.started", task_id=task_id, attempt_id=cursor.lastrowid,
                            number=number, agent=agent, branch=branch, base=base_commit)
        return [self.get_attempt(attempt_id) for attempt_id in ids]

    def siblings(self, attempt: Attempt) -> list[Attempt]:
        """The attempts started together with this one (itself included): a best-of-N batch."""
        return [_attempt(row) for row in self._db.execute(
            "SELECT * FROM attempts WHERE task_id = ? AND started_at = ? ORDER BY number",
            (attempt.task_id, attempt.started_at))]

    def update_attempt(self, attempt_id: int, **fields: Any) -> None:
        """Set plain fields (pid, worktree, tokens...) that are not state changes."""
        allowed = {"pid", "worktree", "head_commit", "input_tokens", "output_tokens", "summary",
                   "exit_code", "checks_passed", "fix_rounds", "reason", "ai_review", "session"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not plain attempt fields: {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE attempts SET {sets} WHERE id = ?", [*fields.values(), attempt_id])

    def finish_attempt(self, attempt_id: int, state: AttemptState, event: str, *,
                       task_state: TaskState | None = None, task_reason: str | None = None,
                       task_feedback: str | None = None, event_data: dict[str, Any] | None = None,
                       task_event_data: dict[str, Any] | None = None,
                       then: AttemptState | None = None, **fields: Any) -> Attempt:
        """Move an attempt (and optionally its task) to a new state with one event each.

        `then`: the state the attempt moves on to at once, in the same transaction, with its
        own event (an auto-approval: `ready`, then `approved` with the task's reason)."""
        with self.transaction() as db:
            row = db.execute("SELECT task_id, state FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
            if row is None:
                raise NotFound(f"there is no attempt {attempt_id}", hint="`claw show TASK` lists attempts")
            noted = {k: v for k, v in fields.items() if k in ("reason", "exit_code")}
            if then is not None:  # the attempt's reason is the later state's, as the task's
                fields = {**fields, "reason": task_reason}
            sets = ["state = ?"] + [f"{name} = ?" for name in fields]
            values = [str(then or state), *fields.values()]
            if state in RUN_OUTCOMES:
                sets.append("finished_at = COALESCE(finished_at, ?)")
                values.append(time.time())
            db.execute(f"UPDATE attempts SET {', '.join(sets)} WHERE id = ?", [*values, attempt_id])
            self._event(db, event, task_id=row["task_id"], attempt_id=attempt_id,
                        old=row["state"], new=str(state), **(event_data or {}), **noted)
            if then is not None:
                self._event(db, f"attempt.{then}", task_id=row["task_id"], attempt_id=attempt_id,
                            old=str(state), new=str(then), reason=task_reason)
            if task_state is not None:
                self._move_task(db, row["task_id"], task_state, f"task.{task_state}",
                                reason=task_reason, feedback=task_feedback, attempt_id=attempt_id,
                                **(task_event_data or {}))
        return self.get_attempt(attempt_id)

    def get_attempt(self, attempt_id: int) -> Attempt:
        row = self._db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no attempt {attempt_id}", hint="`claw show TASK` lists attempts")
        return _attempt(row)

    def attempts(self, task_id: int | None = None,
                 states: Sequence[AttemptState] | None = None, *, ai_review: str | None = None) -> list[Attempt]:
        query, args = "SELECT * FROM attempts WHERE 1=1", []
        if task_id is not None:
            query += " AND task_id = ?"
            args.append(task_id)
        if ai_review is not None:
            query += " AND ai_review = ?"
            args.append(ai_review)
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            args += [str(s) for s in states]
        return [_attempt(row) for row in self._db.execute(query + " ORDER BY id", args)]

    def latest_attempt(self, task_id: int) -> Attempt | None:
        """The attempt that stands for the task now: its last, but never one a best-of-N
        sibling superseded (the kept one is what gets reviewed and landed)."""
        row = self._db.execute("SELECT * FROM attempts WHERE task_id = ? AND state != 'superseded'"
                               " ORDER BY number DESC LIMIT 1", (task_id,)).fetchone()
        return _attempt(row) if row else None

    # -- events ---------------------------------------------------------------------------

    def events(self, task_id: int | None = None, after_id: int = 0, *,
               kinds: Sequence[str] = (), since: float | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM events WHERE id > ?", [after_id]
        if task_id is not None:
            query += " AND task_id = ?"
            args.append(task_id)
        if kinds:
            query += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        if since is not None:
            query += " AND at >= ?"
            args.append(since)
        return [{"id": r["id"], "at": r["at"], "task_id": r["task_id"], "attempt_id": r["attempt_id"],
                 "kind": r["kind"], "data": json.loads(r["data"])}
                for r in self._db.execute(query + " ORDER BY id", args)]

    def last_event_id(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]

    # -- the daemon's state and outgoing notifications ------------------------------------

    def daemon_state(self, key: str) -> Any:
        """The JSON value stored under `key` (a schedule's last fire, a watcher's last output), or None."""
        row = self._db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_daemon_state(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            self._set_state(db, key, value)

    def _set_state(self, db: sqlite3.Connection, key: str, value: Any) -> None:
        db.execute("INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                   " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                   (key, json.dumps(value, default=str), time.time()))

    def fire_trigger(self, key: str, expect: Any, value: Any, *, event: str,
                     tasks: Sequence[dict[str, Any]] = (),
                     notification: Notification | None = None, **data: Any) -> list[int] | None:
        """What a schedule, watcher or heartbeat does when it fires, all or nothing.

        Compare-and-set: only when the state under `key` still equals `expect` (what the caller
        read before deciding to fire) is it set to `value`, the tasks (keyword arguments of
        `add_task`) queued, the notification queued and `event` recorded, in one transaction.
        So a trigger fires once per due time even with two processes or a crash in between.
        Returns the new tasks' ids, or None (and changes nothing) when the state had moved on.
        """
        with self.transaction() as db:
            row = db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
            if (json.loads(row[0]) if row else None) != json.loads(json.dumps(expect, default=str)):
                return None
            self._set_state(db, key, value)
            ids = [self._insert_task(db, **task, source=key) for task in tasks]
            if notification is not None:
                self._insert_notification(db, notification)
            self._event(db, event, task_id=ids[0] if len(ids) == 1 else None, key=key,
                        tasks=ids, **data)
        return ids

    def add_notification(self, notification: Notification) -> int:
        with self.transaction() as db:
            return self._insert_notification(db, notification)

    def _insert_notification(self, db: sqlite3.Connection, item: Notification) -> int:
        return db.execute("INSERT INTO notifications (at, kind, summary, importance, event_id)"
                          " VALUES (?, ?, ?, ?, ?)",
                          (item.at or time.time(), item.kind, item.summary, str(item.importance),
                           item.event_id)).lastrowid

    def notifications_from_events(self, items: Sequence[Notification], cursor_key: str,
                                  last_event_id: int, expect: int) -> bool:
        """Queue notifications made from events and move the read cursor past them, atomically.

        False (nothing queued) when the cursor is no longer at `expect`: another reader got there.
        """
        with self.transaction() as db:
            row = db.execute("SELECT value FROM daemon_state WHERE key = ?", (cursor_key,)).fetchone()
            if (json.loads(row[0]) if row else 0) != expect:
                return False
            for item in items:
                self._insert_notification(db, item)
            self._set_state(db, cursor_key, last_event_id)
        return True

    def notifications(self, *, pending: bool | None = None) -> list[Notification]:
        query = "SELECT * FROM notifications"
        if pending is not None:
            query += " WHERE sent_at IS NULL" if pending else " WHERE sent_at IS NOT NULL"
        return [Notification(kind=r["kind"], summary=r["summary"], importance=Importance(r["importance"]),
                             event_id=r["event_id"], at=r["at"], id=r["id"], sent_at=r["sent_at"],
                             attempts=r["attempts"], error=r["error"])
                for r in self._db.execute(query + " ORDER BY id")]

    def mark_notifications(self, ids: Sequence[int], *, sent_at: float | None = None,
                           error: str | None = None) -> None:
        """Delivered (`sent_at`), or one more failed try (`error`): kept pending for the next."""
        marks = ",".join("?" * len(ids))
        with self.transaction() as db:
            if sent_at is not None:
                db.execute(f"UPDATE notifications SET sent_at = ?, attempts = attempts + 1, error = NULL"
                           f" WHERE id IN ({marks})", [sent_at, *ids])
            else:
                db.execute(f"UPDATE notifications SET attempts = attempts + 1, error = ? WHERE id IN ({marks})",
                           [error, *ids])

    # -- workspaces (the pool's records and port leases) ------------------------------------

    def add_workspace(self, workspace_id: str, path: str, *, state: str, attempt_id: int | None,
                      port_range: tuple[int, int], ports: int,
                      port_free: Any = lambda base, count: True) -> dict[str, Any]:
        """Record a new workspace and lease it the lowest free block of `ports` ports.

        The lease is exclusive across processes (one write transaction, a UNIQUE column);
        `port_free(base, count)` skips blocks another program on the machine is using.
        """
        now = time.time()
        low, high = port_range
        with self.transaction() as db:
            taken = {r[0] for r in db.execute("SELECT port_base FROM workspaces WHERE port_base IS NOT NULL")}
            base = next((b for b in range(low, high - ports + 2, ports)
                         if b not in taken and port_free(b, ports)), None)
            if base is None:
                raise ClawError(f"no free block of {ports} ports left in {low}-{high}",
                                hint="widen [workspace] port_range, or `claw workspace prune` stale workspaces")
            db.execute("INSERT INTO workspaces (id, path, state, attempt_id, maker_pid, port_base, ports,"
                       " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (workspace_id, path, state, attempt_id, os.getpid(), base, ports, now, now))
            self._event(db, "workspace.made", attempt_id=attempt_id, workspace=workspace_id,
                        state=state, ports=[base, base + ports - 1])
        return self.workspace(workspace_id)

    def move_workspace(self, workspace_id: str, state: str, *, expect: Sequence[str] | None = None,
                       attempt_id: int | None = None, **data: Any) -> bool:
        """Change a workspace's state (only from an `expect`ed one); False when it was not there.

        Claiming a pooled workspace is `move_workspace(id, "in_use", expect=["ready"], ...)`:
        of two processes racing for one, exactly one gets True.
        """
        with self.transaction() as db:
            query, args = "UPDATE workspaces SET state = ?, attempt_id = ?, updated_at = ? WHERE id = ?", \
                [state, attempt_id, time.time(), workspace_id]
            if expect:
                query += f" AND state IN ({','.join('?' * len(expect))})"
                args += list(expect)
            if db.execute(query, args).rowcount == 0:
                return False
            self._event(db, f"workspace.{state}", attempt_id=attempt_id, workspace=workspace_id, **data)
        return True

    def remove_workspace(self, workspace_id: str, **data: Any) -> None:
        """Forget a workspace; its ports go back to the pool of free ones."""
        with self.transaction() as db:
            if db.execute("DELETE FROM workspaces WHERE id = ?", (workspace_id,)).rowcount:
                self._event(db, "workspace.removed", workspace=workspace_id, **data)

    def workspace(self, workspace_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM workspaces WHERE id = ?", (workspace_id,)).fetchone()
        return dict(row) if row else None

    def workspaces(self, states: Sequence[str] | None = None, path: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM workspaces WHERE 1=1", []
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if path is not None:
            query += " AND path = ?"
            args.append(path)
        return [dict(row) for row in self._db.execute(query + " ORDER BY created_at, id", args)]


    # -- memory notes ----------------------------------------------------------------------

    def add_note(self, body: str, *, source: str = "person", task_id: int | None = None,
                 attempt_id: int | None = None, tags: Sequence[str] = ()) -> Note:
        with self.transaction() as db:
            for table, value in (("tasks", task_id), ("attempts", attempt_id)):
                if value is not None and db.execute(f"SELECT 1 FROM {table} WHERE id = ?",
                                                    (value,)).fetchone() is None:
                    raise NotFound(f"there is no {table[:-1]} {value} to attach the note to",
                                   hint="`claw status` lists the task ids; leave it out for a general note")
            note_id = self._insert_notes(db, [body], source=source, task_id=task_id,
                                         attempt_id=attempt_id, tags=tags)[0]
            self._event(db, "memory.added", task_id=task_id, attempt_id=attempt_id, note=note_id,
                        source=source)
        return self.get_note(note_id)

    def import_notes(self, bodies: Sequence[str], *, source: str = "person",
                     tags: Sequence[str] = ()) -> int:
        """Add many notes in one transaction (one event); return how many."""
        with self.transaction() as db:
            ids = self._insert_notes(db, bodies, source=source, task_id=None, attempt_id=None, tags=tags)
            self._event(db, "memory.imported", notes=len(ids), source=source)
        return len(ids)

    def _insert_notes(self, db: sqlite3.Connection, bodies: Sequence[str], *, source: str,
                      task_id: int | None, attempt_id: int | None, tags: Sequence[str]) -> list[int]:
        now, tag_text, ids, counts = time.time(), " ".join(tags), [], {}
        for body in bodies:
            ids.append(db.execute("INSERT INTO notes (body, source, task_id, attempt_id, tags, created_at)"
                                  " VALUES (?, ?, ?, ?, ?, ?)",
                                  (body, source, task_id, attempt_id, tag_text, now)).lastrowid)
            for term in index_terms(f"{body} {tag_text}"):
                counts[term] = counts.get(term, 0) + 1
        db.executemany("INSERT INTO note_terms (term, notes) VALUES (?, ?)"
                       " ON CONFLICT (term) DO UPDATE SET notes = notes + excluded.notes",
                       list(counts.items()))
        return ids

    def get_note(self, note_id: int) -> Note:
        row = self._db.execute("SELECT *, NULL AS score FROM notes WHERE id = ?", (note_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no note {note_id}", hint="`claw memory list` shows the note ids")
        return _note(row)

    def notes(self, *, limit: int | None = None, tag: str | None = None,
              task_id: int | None = None) -> list[Note]:
        """Newest first."""
        query, args = "SELECT *, NULL AS score FROM notes WHERE 1=1", []
        if tag is not None:
            query += " AND (' ' || tags || ' ') LIKE ?"
            args.append(f"% {tag} %")
        if task_id is not None:
            query += " AND task_id = ?"
            args.append(task_id)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        return [_note(row) for row in self._db.execute(query, args)]

    def search_notes(self, match: str, limit: int = 10, min_id: int = 0) -> list[Note]:
        """Notes matching an FTS5 query (among those from `min_id` on), best (lowest BM25) first."""
        try:
            # Rank inside the index first, then read the few notes: joining before the sort
            # would carry every matching note's row through it (three times slower).
            rows = self._db.execute(
                "WITH best AS (SELECT rowid, bm25(notes_fts) AS score FROM notes_fts"
                " WHERE notes_fts MATCH ? AND rowid >= ? ORDER BY score LIMIT ?)"
                " SELECT notes.*, best.score FROM best JOIN notes ON notes.id = best.rowid"
                " ORDER BY best.score", (match, min_id, limit)).fetchall()
        except sqlite3.OperationalError as error:
            raise ClawError(f"cannot search memory for {match!r}: {error}",
                            hint="use plain words; quote a phrase with double quotes") from None
        return [_note(row) for row in rows]

    def note_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many notes hold each term (terms no note holds are left out)."""
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        return {row[0]: row[1] for row in self._db.execute(
            f"SELECT term, notes FROM note_terms WHERE term IN ({marks}) AND notes > 0", list(terms))}

    def note_id_range(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM notes").fetchone()
        return row[0], row[1]

    def notes_without_vector(self, model: str, limit: int) -> list[Note]:
        return [_note(row) for row in self._db.execute(
            "SELECT *, NULL AS score FROM notes WHERE id NOT IN (SELECT note_id FROM note_vectors"
            " WHERE model = ?) ORDER BY id LIMIT ?", (model, limit))]

    def save_note_vectors(self, model: str, vectors: Sequence[tuple[int, bytes]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO note_vectors (note_id, model, vector) VALUES (?, ?, ?)",
                           [(note_id, model, blob) for note_id, blob in vectors])

    def note_vectors(self, model: str) -> list[tuple[int, bytes]]:
        return [(row[0], row[1]) for row in self._db.execute(
            "SELECT note_id, vector FROM note_vectors WHERE model = ? ORDER BY note_id", (model,))]

    def get_notes(self, ids: Sequence[int]) -> list[Note]:
        """The notes of these ids, in this order (ids without a note left out)."""
        rows = {row["id"]: _note(row) for row in self._db.execute(
            f"SELECT *, NULL AS score FROM notes WHERE id IN ({', '.join('?' * len(ids))})", list(ids))}
        return [rows[i] for i in ids if i in rows]

    def forget_note(self, note_id: int) -> Note:
        note = self.get_note(note_id)
        with self.transaction() as db:
            db.execute("DELETE FROM note_vectors WHERE note_id = ?", (note_id,))
            db.execute("DELETE FROM notes WHERE id = ?", (note_id,))
            db.executemany("UPDATE note_terms SET notes = notes - 1 WHERE term = ?",
                           [(t,) for t in index_terms(f"{note.body} {' '.join(note.tags)}")])
            self._event(db, "memory.forgotten", task_id=note.task_id, attempt_id=note.attempt_id,
                        note=note_id)
        return note

    # -- model calls (the gateway's meter) -------------------------------------------------

    def record_llm_call(self, call: LlmCall) -> int:
        fields = {k: v for k, v in vars(call).items() if k != "id"}
        with self.transaction() as db:
            cursor = db.execute(f"INSERT INTO llm_calls ({', '.join(fields)}) VALUES "
                                f"({', '.join('?' * len(fields))})", list(fields.values()))
        return cursor.lastrowid

    def llm_calls(self, *, attempt_id: int | None = None, task_id: int | None = None,
                  since: float | None = None, experiment_id: int | None = None) -> list[LlmCall]:
        query, args = self._llm_filter(attempt_id, task_id, since, experiment_id)
        return [LlmCall(**{**dict(row), "stream": bool(row["stream"])})
                for row in self._db.execute("SELECT * FROM llm_calls" + query + " ORDER BY id", args)]

    def refused_calls(self, after_id: int = 0) -> list[tuple[int, int, str]]:
        """(call id, attempt id, message) of the calls the gateway refused over budget, after `after_id`."""
        return [(row[0], row[1], row[2] or "") for row in self._db.execute(
            "SELECT id, attempt_id, error FROM llm_calls WHERE id > ? AND status = 'refused'"
            " AND attempt_id IS NOT NULL ORDER BY id",
            (after_id,))]

    def budget_refusal(self, attempt_id: int) -> str | None:
        """The gateway's message when it refused a call of this attempt over budget, else None."""
        row = self._db.execute("SELECT error FROM llm_calls WHERE attempt_id = ? AND status = 'refused' "
                               "ORDER BY id LIMIT 1", (attempt_id,)).fetchone()
        return None if row is None else (row[0] or "over budget")

    def llm_spend(self, *, attempt_id: int | None = None, task_id: int | None = None,
                  since: float | None = None, experiment_id: int | None = None) -> tuple[int, float]:
        """(tokens, dollars) spent by the calls that match; unpriced calls cost nothing."""
        query, args = self._llm_filter(attempt_id, task_id, since, experiment_id)
        row = self._db.execute("SELECT COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost), 0)"
                               " FROM llm_calls" + query, args).fetchone()
        return row[0], row[1]

    def research_spend(self, run_id: int) -> tuple[int, float]:
        """(tokens, dollars) the experiments of a research run spent through the gateway."""
        row = self._db.execute("SELECT COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost), 0)"
                               " FROM llm_calls JOIN experiments ON experiments.id = llm_calls.experiment_id"
                               " WHERE experiments.run_id = ?", (run_id,)).fetchone()
        return row[0], row[1]

    @staticmethod
    def _llm_filter(attempt_id: int | None, task_id: int | None, since: float | None,
                    experiment_id: int | None = None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, value in (("attempt_id", attempt_id), ("task_id", task_id), ("experiment_id", experiment_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            args.append(since)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    # -- research mode ----------------------------------------------------------------------

    def start_research_run(self, *, name: str, branch: str, agent: str, goal: str, parallel: int,
                           base_commit: str, pid: int) -> ResearchRun:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO research_runs (name, branch, agent, goal, parallel, pid, base_commit,"
                " best_commit, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, branch, agent, goal, parallel, pid, base_commit, base_commit, time.time()))
            run_id = cursor.lastrowid
            self._event(db, "research.started", run_id=run_id, name=name, branch=branch, agent=agent)
        return self.get_research_run(run_id)

    def update_research_run(self, run_id: int, event: str | None = None, **fields: Any) -> None:
        """Set a run's best so far or its end (state, reason, finished_at), with an event if named."""
        allowed = {"state", "reason", "best_commit", "baseline_metric", "best_metric", "finished_at"}
        if set(fields) - allowed:
            raise ValueError(f"not research run fields: {sorted(set(fields) - allowed)}")
        with self.transaction() as db:
            sets = ", ".join(f"{name} = ?" for name in fields)
            db.execute(f"UPDATE research_runs SET {sets} WHERE id = ?", [*fields.values(), run_id])
            if event:
                self._event(db, event, run_id=run_id, **fields)

    def get_research_run(self, run_id: int) -> ResearchRun:
        row = self._db.execute("SELECT * FROM research_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no research run {run_id}", hint="`claw research status` lists them")
        return ResearchRun(**dict(row))

    def research_runs(self, name: str | None = None) -> list[ResearchRun]:
        query, args = "SELECT * FROM research_runs", []
        if name is not None:
            query, args = query + " WHERE name = ?", [name]
        return [ResearchRun(**dict(row)) for row in self._db.execute(query + " ORDER BY id", args)]

    def start_experiment(self, run_id: int, *, name: str, round: int, parent_commit: str,
                         status: ExperimentStatus = ExperimentStatus.running) -> Experiment:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO experiments (run_id, name, round, parent_commit, status, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (run_id, name, round, parent_commit, str(status), time.time()))
            experiment_id = cursor.lastrowid
            self._event(db, "experiment.started", run_id=run_id, experiment_id=experiment_id,
                        round=round, parent=parent_commit)
        return self.get_experiment(experiment_id)

    def finish_experiment(self, experiment_id: int, status: ExperimentStatus, **fields: Any) -> Experiment:
        """Record an experiment's outcome (metric, commit, resource use, reason) with its event."""
        allowed = {"commit_sha", "description", "reason", "params", "metric", "seconds",
                   "cpu_seconds", "max_rss_mb", "log_tail"}
        if set(fields) - allowed:
            raise ValueError(f"not experiment fields: {sorted(set(fields) - allowed)}")
        if "params" in fields:
            fields["params"] = None if fields["params"] is None else json.dumps(fields["params"])
        with self.transaction() as db:
            sets = ", ".join(["status = ?", "finished_at = ?", *(f"{name} = ?" for name in fields)])
            db.execute(f"UPDATE experiments SET {sets} WHERE id = ?",
                       [str(status), time.time(), *fields.values(), experiment_id])
            self._event(db, f"experiment.{status}", experiment_id=experiment_id,
                        metric=fields.get("metric"), commit=fields.get("commit_sha"),
                        reason=fields.get("reason"))
        return self.get_experiment(experiment_id)

    def ended(self, kind: str, number: int) -> str | None:
        """How an attempt (or experiment) ended, or None while it may still call its model: it
        runs, or the AI reviewer reviews it with its key. What the gateway asks per call (a
        read by primary key)."""
        if kind == "experiment":
            row = self._db.execute("SELECT status FROM experiments WHERE id = ?", (number,)).fetchone()
            return None if row is None or row[0] == str(ExperimentStatus.running) else row[0]
        row = self._db.execute("SELECT state, ai_review FROM attempts WHERE id = ?", (number,)).fetchone()
        if row is None or row[0] == str(AttemptState.running) or row[1] == "running":
            return None
        return row[0]

    def get_experiment(self, experiment_id: int) -> Experiment:
        row = self._db.execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise NotFound(f"there is no experiment {experiment_id}")
        return _experiment(row)

    def experiments(self, *, name: str | None = None, run_id: int | None = None) -> list[Experiment]:
        query, args = "SELECT * FROM experiments WHERE 1=1", []
        if name is not None:
            query, args = query + " AND name = ?", [*args, name]
        if run_id is not None:
            query, args = query + " AND run_id = ?", [*args, run_id]
        return [_experiment(row) for row in self._db.execute(query + " ORDER BY id", args)]


def _attempt(row: sqlite3.Row) -> Attempt:
    passed = row["checks_passed"]
    return Attempt(id=row["id"], task_id=row["task_id"], number=row["number"], agent=row["agent"],
                   state=AttemptState(row["state"]), branch=row["branch"],
                   base_commit=row["base_commit"], head_commit=row["head_commit"],
                   worktree=row["worktree"], pid=row["pid"], started_at=row["started_at"],
                   finished_at=row["finished_at"], exit_code=row["exit_code"],
                   summary=row["summary"], reason=row["reason"],
                   input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                   checks_passed=None if passed is None else bool(passed),
                   fix_rounds=row["fix_rounds"], feedback=row["feedback"], ai_review=row["ai_review"],
                   session=row["session"])


def _experiment(row: sqlite3.Row) -> Experiment:
    data = dict(row)
    data["status"] = ExperimentStatus(data["status"])
    data["params"] = json.loads(data["params"]) if data["params"] else None
    return Experiment(**data)


_WORD = re.compile(r"[^\W_]+")


def index_terms(text: str) -> set[str]:
    """The words of `text` as the notes' full-text index splits them: lowercase, no accents."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return set(_WORD.findall(plain))


def _note(row: sqlite3.Row) -> Note:
    return Note(id=row["id"], body=row["body"], source=row["source"], task_id=row["task_id"],
                attempt_id=row["attempt_id"], tags=row["tags"].split(), created_at=row["created_at"],
                score=row["score"])


def _transition_hint(current: TaskState) -> str:
    return {
        TaskState.merged: "it has landed; add a new task for more work",
        TaskState.resolved: "the task that resolved its conflict landed it; add a new task for more work",
        TaskState.blocked: "it waits for the dependency its reason names: `claw retry` that one",
        TaskState.running: "wait for its attempt to finish, or `claw cancel` it",
        TaskState.queued: "it has not run yet",
        TaskState.failed: "`claw retry` queues it again",
        TaskState.rejected: "`claw retry` queues it again",
        TaskState.cancelled: "`claw retry` queues it again",
    }.get(current, "`claw show` tells where it stands")


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        text = "\n".join(current)
        if text.rstrip().endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
