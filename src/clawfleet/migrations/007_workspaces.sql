-- One row per workspace (a worktree made by the pool or for an attempt), so the pool's state,
-- who uses a workspace and which ports it holds are known to every claw process.
-- state: making (checkout and setup under way, by maker_pid), ready (warm in the pool),
-- in_use (by attempt_id), broken (setup failed while filling the pool; see setup.json).
-- port_base..port_base+ports-1 are this workspace's ports; UNIQUE makes the lease exclusive.
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    attempt_id  INTEGER,
    maker_pid   INTEGER,
    port_base   INTEGER UNIQUE,
    ports       INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX workspaces_state ON workspaces(state);
