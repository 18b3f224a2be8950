-- kind: expand
-- Cancelling a quest: the request is durable on the quest's row, so a cancel that arrives
-- while no worker holds the quest is honoured when one picks it up. And a directory lookup
-- (quest id -> company id) for operators' commands that are given only a quest id.

ALTER TABLE quests ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE quests ADD COLUMN cancel_reason text;
ALTER TABLE quests ADD COLUMN cancelled_by text;

-- Like company_ids(): runs as the owner, whom the quests policy does not bind; tells the
-- app role which company a quest id belongs to, and nothing else.
ALTER TABLE quests NO FORCE ROW LEVEL SECURITY;
CREATE FUNCTION quest_company(quest uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT company_id FROM quests WHERE id = quest $$;
REVOKE EXECUTE ON FUNCTION quest_company(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION quest_company(uuid) TO system2_app;
