-- kind: expand
-- Integrations: who used a credential (a record of every decrypt, without plaintext), the
-- tool calls that changed something at a provider (so a redelivered step changes nothing
-- twice), and the list of company ids that maintenance work (key rewrap) walks.

CREATE TABLE credential_uses (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id     uuid NOT NULL REFERENCES companies (id),
    credential_id  uuid NOT NULL,
    integration    text NOT NULL,
    key_id         text NOT NULL,
    purpose        text NOT NULL,
    quest_id       uuid,
    worker         text NOT NULL,
    used_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credential_uses_credential ON credential_uses (company_id, credential_id, used_at DESC);

CREATE TABLE tool_calls (
    company_id       uuid NOT NULL REFERENCES companies (id),
    idempotency_key  text NOT NULL,
    quest_id         uuid NOT NULL,
    step             integer NOT NULL,
    tool             text NOT NULL,
    status           text NOT NULL CHECK (status IN ('started', 'done')),
    result           jsonb,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (company_id, idempotency_key)
);

ALTER TABLE credential_uses ENABLE ROW LEVEL SECURITY;
ALTER TABLE credential_uses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON credential_uses FOR SELECT USING (company_id = app_company_id());
CREATE POLICY tenant_append ON credential_uses FOR INSERT WITH CHECK (company_id = app_company_id());

ALTER TABLE tool_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_calls FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON tool_calls
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

GRANT SELECT, INSERT ON credential_uses TO system2_app;
GRANT SELECT, INSERT, UPDATE ON tool_calls TO system2_app;

-- Maintenance (re-encrypting every credential under a new key) must visit every company,
-- one tenant transaction at a time. This function gives the app role the company ids and
-- nothing else; it runs as its owner, who is not subject to the companies policy.
ALTER TABLE companies NO FORCE ROW LEVEL SECURITY;
CREATE FUNCTION company_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id FROM companies ORDER BY id $$;
REVOKE EXECUTE ON FUNCTION company_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION company_ids() TO system2_app;
