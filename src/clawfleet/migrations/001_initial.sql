CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT 'feature',
    agent       TEXT,
    priority    INTEGER NOT NULL DEFAULT 0,
    importance  TEXT NOT NULL DEFAULT 'normal',
    state       TEXT NOT NULL DEFAULT 'queued',
    footprint   TEXT NOT NULL DEFAULT '[]',
    checks      TEXT NOT NULL DEFAULT '[]',
    feedback    TEXT,
    reason      TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE task_deps (
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    depends_on  INTEGER NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on)
);

CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY,
    task_id       INTEGER NOT NULL REFERENCES tasks(id),
    number        INTEGER NOT NULL,
    agent         TEXT NOT NULL,
    state         TEXT NOT NULL,
    branch        TEXT NOT NULL,
    base_commit   TEXT NOT NULL,
    head_commit   TEXT,
    worktree      TEXT,
    pid           INTEGER,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    exit_code     INTEGER,
    summary       TEXT,
    reason        TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    checks_passed INTEGER,
    fix_rounds    INTEGER NOT NULL DEFAULT 0,
    feedback      TEXT,
    UNIQUE (task_id, number)
);

-- Append-only history of everything that happened; the triggers keep it so.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    task_id     INTEGER,
    attempt_id  INTEGER,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE INDEX tasks_state ON tasks(state);
CREATE INDEX attempts_task ON attempts(task_id);
CREATE INDEX attempts_state ON attempts(state);
CREATE INDEX events_task ON events(task_id);
