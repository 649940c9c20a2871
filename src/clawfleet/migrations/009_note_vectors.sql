-- Optional: each note's embedding per embedding model, so memory search can rank by meaning
-- as well as by words (`[memory] embeddings_model`). Vectors are float32, L2-normalised.
CREATE TABLE note_vectors (
    note_id INTEGER NOT NULL REFERENCES notes(id),
    model   TEXT NOT NULL,
    vector  BLOB NOT NULL,
    PRIMARY KEY (note_id, model)
);
