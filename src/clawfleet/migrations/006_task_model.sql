-- A task may ask for its own model and reasoning effort, over its agent's config.
ALTER TABLE tasks ADD COLUMN model TEXT;
ALTER TABLE tasks ADD COLUMN effort TEXT;
