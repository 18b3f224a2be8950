-- kind: expand
-- A credential the provider refuses for good (its token refused again right after the one
-- refresh, or its refresh refused with invalid_grant) is marked as needing reconnection:
-- when and why (our words, never a token). Quests that need it fail with that reason until
-- the company connects the integration again, which clears both columns. Old code neither
-- reads nor writes them.

ALTER TABLE integration_credentials ADD COLUMN needs_reconnect_at timestamptz;
ALTER TABLE integration_credentials ADD COLUMN needs_reconnect_reason text;
