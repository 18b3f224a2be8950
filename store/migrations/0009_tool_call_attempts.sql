-- kind: expand
-- When a recorded tool call was last sent to its provider (workers/integrations/tools.py).
-- A mutation at a provider that takes no idempotency key (GitHub, Slack) is marked with the
-- call's key; a retry of a call that was sent before first waits until that attempt cannot
-- still be in flight, then looks for its mark instead of sending it again. NULL: never sent
-- (or sent by code from before this column, which only did so with an idempotency key).
-- The table's row-level security and grants (0003_integrations) cover the new column.

ALTER TABLE tool_calls ADD COLUMN attempted_at timestamptz;
