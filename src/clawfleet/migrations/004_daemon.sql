-- The daemon's memory across restarts: when each schedule last fired, what each watcher last
-- saw, how far the notifier has read the events. One JSON value per key.
CREATE TABLE daemon_state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

-- Outgoing notifications: queued in the same transaction as what caused them, sent later
-- (at once, after quiet hours, or in a digest); sent_at stays NULL until delivery succeeded.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    kind        TEXT NOT NULL,
    summary     TEXT NOT NULL,
    importance  TEXT NOT NULL DEFAULT 'normal',
    event_id    INTEGER,
    sent_at     REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX notifications_pending ON notifications(sent_at);
