-- Best-of-N: a task runs `best_of` attempts at once (each agent of `agents` in turn, else its
-- `agent`) and keeps the best; the others end `superseded`, their branches kept.
ALTER TABLE tasks ADD COLUMN best_of INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN agents TEXT NOT NULL DEFAULT '[]';
