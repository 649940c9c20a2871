-- The AI reviewer's state for an attempt waiting in review: running while its process works,
-- then its verdict (approve, revise, reject) or failed. A restarted orchestrator finds the
-- reviews still running here.
ALTER TABLE attempts ADD COLUMN ai_review TEXT;
CREATE INDEX attempts_ai_review ON attempts(ai_review) WHERE ai_review = 'running';
