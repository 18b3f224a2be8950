-- kind: expand
-- Transcripts are kept S2_TRANSCRIPT_RETENTION_DAYS (store/retention.py): after that a step's
-- content and tool results are redacted in place and the time noted here; its usage, cost,
-- events and the quest's goal and result stay. The partial index finds a company's steps
-- still to redact, oldest first, without reading the redacted ones again. The table's
-- row-level security and grants (0001_initial) cover the new column; old code neither reads
-- nor writes it.

ALTER TABLE quest_steps ADD COLUMN redacted_at timestamptz;

CREATE INDEX quest_steps_to_redact ON quest_steps (company_id, finished_at)
    WHERE redacted_at IS NULL AND finished_at IS NOT NULL;
