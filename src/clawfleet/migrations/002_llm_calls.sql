-- One row per model call that went through the gateway, attributed to its attempt.
-- input_tokens counts all input, cached included; cost is NULL when no price is known.
CREATE TABLE llm_calls (
    id             INTEGER PRIMARY KEY,
    attempt_id     INTEGER NOT NULL REFERENCES attempts(id),
    task_id        INTEGER NOT NULL REFERENCES tasks(id),
    api            TEXT NOT NULL,
    model          TEXT NOT NULL DEFAULT '',
    upstream       TEXT NOT NULL DEFAULT '',
    stream         INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens  INTEGER NOT NULL DEFAULT 0,
    cost           REAL,
    latency_ms     REAL NOT NULL DEFAULT 0,
    ttft_ms        REAL,
    http_status    INTEGER,
    status         TEXT NOT NULL,
    error          TEXT,
    started_at     REAL NOT NULL
);
CREATE INDEX llm_calls_attempt ON llm_calls(attempt_id);
CREATE INDEX llm_calls_task ON llm_calls(task_id);
CREATE INDEX llm_calls_started ON llm_calls(started_at);
