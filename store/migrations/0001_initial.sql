-- kind: expand
-- The first schema: tenants, their members, quests with their steps, integration
-- credentials (ciphertext only) and the append-only activity_log.
--
-- Every tenant table has company_id, row-level security ENABLEd and FORCEd, and a policy
-- that fails closed when no tenant is set for the transaction.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'system2_app') THEN
        CREATE ROLE system2_app NOLOGIN;
    END IF;
END
$$;

-- The transaction's tenant, or NULL (never '') when none is set: policies compare with it,
-- and NULL never equals anything, so a missing tenant sees and writes nothing.
CREATE FUNCTION app_company_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.company_id', true), '')::uuid $$;

CREATE TABLE companies (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    company_id  uuid NOT NULL REFERENCES companies (id),
    user_id     text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200),
    role        text NOT NULL CHECK (role IN ('member', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, user_id)
);

CREATE TABLE quests (
    id               uuid PRIMARY KEY,
    company_id       uuid NOT NULL REFERENCES companies (id),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'halted')),
    goal             text NOT NULL,
    model            text NOT NULL,
    max_usd_micros   bigint CHECK (max_usd_micros > 0),
    created_by       text NOT NULL,
    correlation_id   uuid NOT NULL,
    origin_message_id uuid NOT NULL,
    first_step_enqueued_at timestamptz,
    idempotency_key  text,
    request_hash     text,
    steps_done       integer NOT NULL DEFAULT 0,
    step_claimed     integer NOT NULL DEFAULT 0,
    step_holder      text,
    step_claimed_at  timestamptz,
    cost_usd_micros  bigint NOT NULL DEFAULT 0,
    result           text,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (company_id, id),
    UNIQUE (company_id, idempotency_key)
);
CREATE INDEX quests_company_created ON quests (company_id, created_at DESC);

-- One row per step: the transcript is the goal followed by each step's assistant content
-- and tool results. A step's audit events are kept with it so a redelivered step can
-- re-send exactly the same ones.
CREATE TABLE quest_steps (
    company_id       uuid NOT NULL,
    quest_id         uuid NOT NULL,
    step             integer NOT NULL CHECK (step >= 1),
    status           text NOT NULL CHECK (status IN ('calling', 'replied', 'done')),
    model            text NOT NULL,
    stop_reason      text,
    content          jsonb,
    tool_results     jsonb NOT NULL DEFAULT '[]',
    usage            jsonb,
    cost_usd_micros  bigint NOT NULL DEFAULT 0,
    events           jsonb NOT NULL DEFAULT '[]',
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (quest_id, step),
    FOREIGN KEY (company_id, quest_id) REFERENCES quests (company_id, id)
);

-- OAuth credentials of a company's connected integrations. Tokens are ciphertexts of the
-- application-layer vault (AES-256-GCM, key id inside, bound to company, integration and
-- credential); no key, nor anything a key can be derived from, is ever stored here.
CREATE TABLE integration_credentials (
    id                 uuid PRIMARY KEY,
    company_id         uuid NOT NULL REFERENCES companies (id),
    integration        text NOT NULL,
    account            text,
    key_id             text NOT NULL,
    access_token       bytea NOT NULL,
    refresh_token      bytea,
    access_expires_at  timestamptz,
    scopes             text[] NOT NULL DEFAULT '{}',
    connected_by       text NOT NULL,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, integration)
);

-- Ted's notebook: the built-in tool that changes state without any integration.
CREATE TABLE notes (
    id               uuid PRIMARY KEY,
    company_id       uuid NOT NULL REFERENCES companies (id),
    quest_id         uuid,
    text             text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    idempotency_key  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, idempotency_key)
);

CREATE TABLE activity_log (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id              uuid NOT NULL REFERENCES companies (id),
    occurred_at             timestamptz NOT NULL,
    recorded_at             timestamptz NOT NULL DEFAULT now(),
    actor_type              text NOT NULL,
    actor_id                text NOT NULL,
    action                  text NOT NULL,
    target                  text NOT NULL,
    rationale               text,
    originating_message_id  uuid,
    quest_id                uuid,
    payload                 jsonb NOT NULL DEFAULT '{}',
    idempotency_key         text NOT NULL,
    UNIQUE (company_id, idempotency_key)
);
CREATE INDEX activity_log_company_time ON activity_log (company_id, occurred_at DESC, id DESC);

-- Append-only: the app role is granted neither UPDATE nor DELETE, and triggers refuse UPDATE,
-- DELETE and TRUNCATE to every role, the owner and superusers included, until a migration
-- (reviewed, recorded) drops them.
CREATE FUNCTION activity_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'activity_log is append-only';
END
$$;
CREATE TRIGGER activity_log_append_only
    BEFORE UPDATE OR DELETE ON activity_log
    FOR EACH ROW EXECUTE FUNCTION activity_log_append_only();
CREATE TRIGGER activity_log_no_truncate
    BEFORE TRUNCATE ON activity_log
    FOR EACH STATEMENT EXECUTE FUNCTION activity_log_append_only();

-- Row-level security, enabled and forced, on every tenant table.
ALTER TABLE companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE companies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON companies
    USING (id = app_company_id()) WITH CHECK (id = app_company_id());

ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON memberships
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE quests ENABLE ROW LEVEL SECURITY;
ALTER TABLE quests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON quests
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE quest_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE quest_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON quest_steps
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE integration_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE integration_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON integration_credentials
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON notes
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE activity_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE activity_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON activity_log FOR SELECT
    USING (company_id = app_company_id());
CREATE POLICY tenant_append ON activity_log FOR INSERT
    WITH CHECK (company_id = app_company_id());

-- What the app role may do: no DDL, no TRUNCATE, and activity_log is read and append only.
GRANT USAGE ON SCHEMA public TO system2_app;
GRANT SELECT, INSERT, UPDATE ON companies, memberships, quests, quest_steps, notes TO system2_app;
GRANT DELETE ON quests TO system2_app;  -- a quest whose first step could not be queued
GRANT SELECT, INSERT, UPDATE, DELETE ON integration_credentials TO system2_app;
GRANT SELECT, INSERT ON activity_log TO system2_app;
GRANT SELECT ON schema_migrations TO system2_app;
