-- Research experiments call models through the gateway too: a call belongs to an attempt (and
-- its task) or to an experiment. SQLite cannot relax NOT NULL in place, so the table is rebuilt.
CREATE TABLE llm_calls_new (
    id             INTEGER PRIMARY KEY,
    attempt_id     INTEGER REFERENCES attempts(id),
    task_id        INTEGER REFERENCES tasks(id),
    experiment_id  INTEGER REFERENCES experiments(id),
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
    started_at     REAL NOT NULL,
    CHECK (attempt_id IS NOT NULL OR experiment_id IS NOT NULL)
);
INSERT INTO llm_calls_new (id, attempt_id, task_id, api, model, upstream, stream, input_tokens,
                           output_tokens, cached_tokens, cost, latency_ms, ttft_ms, http_status,
                           status, error, started_at)
    SELECT id, attempt_id, task_id, api, model, upstream, stream, input_tokens, output_tokens,
           cached_tokens, cost, latency_ms, ttft_ms, http_status, status, error, started_at
    FROM llm_calls;
DROP TABLE llm_calls;
ALTER TABLE llm_calls_new RENAME TO llm_calls;
CREATE INDEX llm_calls_attempt ON llm_calls(attempt_id);
CREATE INDEX llm_calls_task ON llm_calls(task_id);
CREATE INDEX llm_calls_experiment ON llm_calls(experiment_id) WHERE experiment_id IS NOT NULL;
CREATE INDEX llm_calls_started ON llm_calls(started_at);
