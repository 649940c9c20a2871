-- A resolve task names the bounced task it lands (`resolves`): when it lands, that task closes as
-- resolved. `merge_wait` is why an approved task is not landing now (a dirty checkout, a full
-- disk), kept until it lands or the reason goes, so `claw status` can say it on the task's line.
ALTER TABLE tasks ADD COLUMN resolves INTEGER REFERENCES tasks(id);
ALTER TABLE tasks ADD COLUMN merge_wait TEXT;
