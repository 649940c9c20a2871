-- The agent's own session of an attempt (Claude Code's session id, Codex's thread id, ...; the
-- built-in agent's trajectory file): a fix round or a send-back continues it instead of starting over.
ALTER TABLE attempts ADD COLUMN session TEXT;
