-- kind: expand
-- A company's weight in fair dispatch of quest steps (workers/fair_queue.py): its share of
-- the worker fleet relative to other companies with steps waiting, 1..1000. NULL: the
-- default (S2_FAIR_DEFAULT_WEIGHT). Set by `system2 guard set --weight`, which also writes it
-- to the Redis hash the dispatch script reads. The table's row-level security and grants
-- (0002_guard) cover the new column; old code neither reads nor writes it.

ALTER TABLE company_limits ADD COLUMN fair_weight integer CHECK (fair_weight BETWEEN 1 AND 1000);
