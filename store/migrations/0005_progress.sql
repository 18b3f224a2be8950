-- kind: expand
-- When a quest last made progress (claimed, replied, finished a step, was put back to wait),
-- so that a sweeper can find quests whose next message was lost and send it again.

ALTER TABLE quests ADD COLUMN touched_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX quests_open_touched ON quests (company_id, touched_at) WHERE status IN ('queued', 'running');
