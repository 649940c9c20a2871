-- Memory: notes with provenance (who wrote it, for which task and attempt, when), searched with
-- FTS5 (BM25). The full-text index is an external-content table kept in step by triggers;
-- note_terms counts the notes holding each word (kept by the store as it adds and deletes
-- notes), so a search can leave out the commonest words without scanning the index for them.
CREATE TABLE notes (
    id          INTEGER PRIMARY KEY,
    body        TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT 'person',
    task_id     INTEGER REFERENCES tasks(id),
    attempt_id  INTEGER REFERENCES attempts(id),
    tags        TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL
);
CREATE INDEX notes_task ON notes(task_id);
CREATE VIRTUAL TABLE notes_fts USING fts5(body, tags, content='notes', content_rowid='id',
                                          tokenize='unicode61 remove_diacritics 2');
CREATE TABLE note_terms (
    term  TEXT PRIMARY KEY,
    notes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER notes_fts_insert AFTER INSERT ON notes
BEGIN INSERT INTO notes_fts (rowid, body, tags) VALUES (new.id, new.body, new.tags); END;
CREATE TRIGGER notes_fts_delete AFTER DELETE ON notes
BEGIN INSERT INTO notes_fts (notes_fts, rowid, body, tags) VALUES ('delete', old.id, old.body, old.tags); END;
CREATE TRIGGER notes_fts_update AFTER UPDATE ON notes
BEGIN
INSERT INTO notes_fts (notes_fts, rowid, body, tags) VALUES ('delete', old.id, old.body, old.tags);
INSERT INTO notes_fts (rowid, body, tags) VALUES (new.id, new.body, new.tags);
END;
