-- Research mode: one row per `claw research run`, one per experiment in it (the baseline too).
CREATE TABLE research_runs (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    branch         TEXT NOT NULL,
    agent          TEXT NOT NULL,
    goal           TEXT NOT NULL,
    parallel       INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'running',
    reason         TEXT,
    pid            INTEGER,
    base_commit    TEXT NOT NULL,
    best_commit    TEXT,
    baseline_metric REAL,
    best_metric    REAL,
    started_at     REAL NOT NULL,
    finished_at    REAL
);
CREATE TABLE experiments (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES research_runs(id),
    name           TEXT NOT NULL,
    round          INTEGER NOT NULL,
    parent_commit  TEXT NOT NULL,
    commit_sha     TEXT,
    status         TEXT NOT NULL DEFAULT 'running',
    description    TEXT NOT NULL DEFAULT '',
    reason         TEXT,
    params         TEXT,
    metric         REAL,
    seconds        REAL,
    cpu_seconds    REAL,
    max_rss_mb     REAL,
    log_tail       TEXT,
    started_at     REAL NOT NULL,
    finished_at    REAL
);
CREATE INDEX experiments_run ON experiments(run_id);
CREATE INDEX experiments_name ON experiments(name);
