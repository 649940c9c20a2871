"""The SQLite store: migrations, WAL, append-only events, atomic state changes, concurrency, busy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

from clawfleet.errors import ClawError, StoreBusy
from clawfleet.models import AttemptState, TaskState
from clawfleet.store import Store

from conftest import claw


def migration_count() -> int:
    """The latest migration's number (the schema version): numbers are given out ahead, so a
    branch may hold 005 before 003 lands."""
    folder = resources.files("clawfleet") / "migrations"
    return max(int(entry.name.split("_", 1)[0]) for entry in folder.iterdir() if entry.name.endswith(".sql"))


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, as another process would open it."""
    return sqlite3.connect(path, isolation_level=None, timeout=5)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "claw.db"


@pytest.fixture
def store(db_path: Path):
    opened = Store(db_path)
    yield opened
    opened.close()


def start(store: Store, task_id: int):
    return store.start_attempt(task_id, agent="builtin", base_commit="0" * 40,
                               branch_for=lambda n: f"claw/{task_id}-t-{n}")


# -- schema ----------------------------------------------------------------------------------

def test_schema_version_is_the_number_of_migrations(store, db_path):
    assert migration_count() >= 1
    assert store.schema_version == migration_count()
    assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == migration_count()


def test_database_is_in_wal_mode(store, db_path):
    assert raw(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_data_and_does_not_rerun_migrations(db_path):
    first = Store(db_path)
    task = first.add_task("survives a reopen", body="details")
    first.close()
    schema_before = raw(db_path).execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()

    # Re-running 001 would fail on CREATE TABLE tasks (it exists) or duplicate the data.
    again = Store(db_path)
    assert again.schema_version == migration_count()
    assert [t.title for t in again.list_tasks()] == ["survives a reopen"]
    assert again.get_task(task.id).body == "details"
    assert len(again.events()) == 1
    again.close()
    assert raw(db_path).execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema_before


def test_a_database_of_an_older_schema_is_upgraded_keeping_its_model_calls(db_path):
    # Written as a clawfleet of schema 9 did: then 011 rebuilds llm_calls for experiments.
    from clawfleet.store import _migrations, _split_sql

    db_path.parent.mkdir(parents=True)
    old = raw(db_path)
    for number, sql in _migrations():
        if number <= 9:
            for statement in _split_sql(sql):
                old.execute(statement)
    old.execute("PRAGMA user_version = 9")
    old.execute("INSERT INTO tasks (title, created_at, updated_at) VALUES ('old', 1, 1)")
    old.execute("INSERT INTO attempts (task_id, number, agent, state, branch, base_commit, started_at)"
                " VALUES (1, 1, 'builtin', 'ready', 'claw/1-old', 'abc', 1)")
    old.execute("INSERT INTO llm_calls (attempt_id, task_id, api, status, input_tokens, output_tokens, cost,"
                " started_at) VALUES (1, 1, 'chat', 'ok', 100, 20, 0.5, 2)")
    old.close()
    store = Store(db_path)
    assert store.schema_version == migration_count()
    [call] = store.llm_calls()
    assert (call.attempt_id, call.task_id, call.experiment_id, call.tokens, call.cost) == (1, 1, None, 120, 0.5)
    assert store.llm_spend(attempt_id=1) == (120, 0.5)
    with pytest.raises(sqlite3.IntegrityError):  # a call belongs to an attempt or an experiment
        store._db.execute("INSERT INTO llm_calls (api, status, started_at) VALUES ('chat', 'ok', 3)")
    store.close()


# -- events ----------------------------------------------------------------------------------

def test_events_are_append_only(store, db_path):
    store.add_task("one")
    other = raw(db_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("UPDATE events SET kind = 'rewritten'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("DELETE FROM events")
    assert [e["kind"] for e in store.events()] == ["task.added"]


def test_state_change_and_its_event_are_written_together(store):
    task = store.add_task("move me")
    moved = store.move_task(task.id, TaskState.cancelled, "task.cancelled", reason="not needed")
    assert moved.state == TaskState.cancelled and moved.reason == "not needed"
    last = store.events(task_id=task.id)[-1]
    assert last["kind"] == "task.cancelled"
    assert last["data"]["old"] == "queued" and last["data"]["new"] == "cancelled"


def test_invalid_transition_raises_and_writes_no_event(store):
    task = store.add_task("still queued")
    before = store.events()
    with pytest.raises(ClawError, match="cannot become merged"):
        store.move_task(task.id, TaskState.merged, "task.merged")
    assert store.get_task(task.id).state == TaskState.queued
    assert store.events() == before


def test_finish_attempt_is_all_or_nothing(store):
    """The attempt's update, its event and the task's move share one transaction."""
    task = store.add_task("atomic")
    attempt = start(store, task.id)
    before = store.events()
    # running -> merged is not an allowed task transition, so the whole change must roll back.
    with pytest.raises(ClawError):
        store.finish_attempt(attempt.id, AttemptState.ready, "attempt.ready",
                             task_state=TaskState.merged, summary="should not stick")
    after = store.get_attempt(attempt.id)
    assert after.state == AttemptState.running and after.summary is None and after.finished_at is None
    assert store.get_task(task.id).state == TaskState.running
    assert store.events() == before


# -- attempts ------------------------------------------------------------------------------

def test_start_attempt_refuses_a_task_that_is_not_queued(store, db_path):
    task = store.add_task("run once")
    attempt = start(store, task.id)
    assert attempt.number == 1 and store.get_task(task.id).state == TaskState.running

    other = Store(db_path)  # a second orchestrator that read the task while it was queued
    events_before = other.events()
    with pytest.raises(ClawError, match="is running"):
        start(other, task.id)
    assert len(other.attempts(task_id=task.id)) == 1
    assert other.events() == events_before
    other.close()

    store.move_task(task.id, TaskState.cancelled, "task.cancelled")
    with pytest.raises(ClawError, match="is cancelled"):
        start(store, task.id)


def test_racing_orchestrators_start_a_task_exactly_once(db_path):
    Store(db_path).add_task("contended")
    racers = 8
    stores = [Store(db_path) for _ in range(racers)]
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(store: Store) -> None:
        barrier.wait()
        try:
            start(store, 1)
            outcomes.append("started")
        except ClawError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused"] * (racers - 1) + ["started"]
    assert len(stores[0].attempts(task_id=1)) == 1
    assert [e["kind"] for e in stores[0].events()].count("task.started") == 1
    for store in stores:
        store.close()


# -- concurrency through the command line ----------------------------------------------------

def test_twenty_claw_add_processes_at_once_all_land(repo):
    procs = [subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "add", f"task number {n}"],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(20)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    assert [code for code, _, _ in results] == [0] * 20, [err for _, _, err in results if err]
    ids = sorted(int(out.strip()) for _, out, _ in results)
    assert ids == list(range(1, 21))

    store = Store(repo / ".claw/run/claw.db")
    assert sorted(t.title for t in store.list_tasks()) == sorted(f"task number {n}" for n in range(20))
    added = [e for e in store.events() if e["kind"] == "task.added"]
    assert sorted(e["task_id"] for e in added) == ids
    store.close()


# -- a busy database ---------------------------------------------------------------------------

def test_store_busy_when_another_connection_holds_an_exclusive_lock(db_path):
    Store(db_path).close()  # create it (WAL) first
    holder = raw(db_path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        store = Store(db_path, busy_timeout=0.3)  # opening only reads: no wait
        with pytest.raises(StoreBusy) as caught:
            store.add_task("blocked")
        assert time.monotonic() - started < 5
        assert str(db_path) in caught.value.message and "busy" in caught.value.message
        assert caught.value.hint and "another claw process" in caught.value.hint
    finally:
        holder.execute("ROLLBACK")


def test_store_busy_in_a_transaction_of_an_open_store(store, db_path):
    quick = Store(db_path, busy_timeout=0.3)
    holder = raw(db_path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreBusy) as caught:
            quick.add_task("blocked")
        assert caught.value.hint
    finally:
        holder.execute("ROLLBACK")
    assert quick.list_tasks() == []
    assert quick.add_task("after the lock").id == 1  # usable again once the lock is gone
    quick.close()


def test_cli_waits_for_a_short_lock_instead_of_failing(repo):
    """Writers queue on the busy timeout: a lock held for a moment only delays `claw add`."""
    assert claw(repo, "add", "creates the database").returncode == 0
    db_path = repo / ".claw/run/claw.db"
    holder = raw(db_path)
    holder.execute("BEGIN EXCLUSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "clawfleet.cli", "add", "queued behind a lock"],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, "claw add gave up instead of waiting for the lock"
    finally:
        holder.execute("ROLLBACK")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "2"


def test_cli_prints_a_one_line_error_when_the_database_stays_locked(repo):
    assert claw(repo, "add", "creates the database").returncode == 0
    holder = raw(repo / ".claw/run/claw.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = claw(repo, "add", "blocked", env={"CLAW_BUSY_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: the database") and "busy" in lines[0]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint:"))


def test_opening_the_store_to_read_does_not_wait_for_a_writer(db_path):
    seed = Store(db_path)
    seed.add_task("readable")
    seed.close()
    holder = raw(db_path)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        reader = Store(db_path, busy_timeout=0.3)
        assert [t.title for t in reader.list_tasks()] == ["readable"]
        reader.close()
    finally:
        holder.execute("ROLLBACK")


def _damage_pages(db: Path) -> None:
    """Overwrite the middle third of the database file with garbage, as a bad disk would."""
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.seek(size // 3)
        handle.write(b"\xa5" * (size // 3))


def test_a_damaged_store_after_an_unclean_stop_is_refused_and_read_in_one_line(repo):
    from test_run import configure
    from conftest import agent_script

    configure(repo, {"writer": agent_script(repo, "writer", "echo hi > hi.txt\n")})
    for n in range(30):
        assert claw(repo, "add", f"task {n}", "--body", "words " * 300).returncode == 0
    # Killed mid-run: the -wal file stays, the mark of an unclean stop.
    assert claw(repo, "run", env={"CLAW_FAULT": "before-fork"}).returncode == -9
    db = repo / ".claw" / "run" / "claw.db"
    assert db.with_name("claw.db-wal").exists()
    _damage_pages(db)

    added = claw(repo, "add", "one more")
    assert added.returncode == 1
    assert "the store" in added.stderr and "is damaged" in added.stderr and ".recover" in added.stderr
    written = db.read_bytes() + (db.with_name("claw.db-wal").read_bytes() if db.with_name("claw.db-wal").exists() else b"")
    assert b"one more" not in written
    shown = claw(repo, "status")
    assert shown.returncode == 1
    assert "Traceback" not in shown.stderr
    assert "is damaged" in shown.stderr.splitlines()[0]


def test_an_emptied_store_where_attempts_ran_is_not_a_new_store(repo):
    from test_run import configure
    from conftest import agent_script

    configure(repo, {"writer": agent_script(repo, "writer", "echo hi > hi.txt\n")})
    claw(repo, "add", "task")
    assert claw(repo, "run").returncode == 0
    db = repo / ".claw" / "run" / "claw.db"
    db.write_bytes(b"")  # a full disk, a bad copy
    for args in (("status",), ("add", "another")):
        result = claw(repo, *args)
        assert result.returncode == 1
        assert "is empty, but attempts ran here" in result.stderr and "Traceback" not in result.stderr
    assert db.stat().st_size == 0
