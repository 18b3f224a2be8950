-- kind: expand
-- Webhooks, the Standard Webhooks way: the endpoints a company's admins register (the
-- signing secret sealed by the vault, bound to the company and the endpoint), and one
-- delivery per event and subscribed endpoint. A delivery's id is the `webhook-id` every
-- attempt carries; it is created in the transaction that writes the event's audit row
-- (store/activity.py), so an event is delivered at least once or its row does not exist.

CREATE TABLE webhook_endpoints (
    id               uuid NOT NULL,
    company_id       uuid NOT NULL REFERENCES companies (id),
    url              text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    event_types      text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 20),
    description      text CHECK (length(description) <= 500),
    key_id           text NOT NULL,
    secret           bytea NOT NULL,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- deliveries given up in a row (each after its full schedule of retries); a success
    -- resets it. S2_WEBHOOK_DISABLE_AFTER of them disable the endpoint.
    failed_streak    integer NOT NULL DEFAULT 0,
    disabled_at      timestamptz,
    disabled_reason  text,
    PRIMARY KEY (company_id, id)
);

CREATE TABLE webhook_deliveries (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    company_id       uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    activity_id      bigint NOT NULL,  -- the event's audit row: its order is the events'
    event_type       text NOT NULL,
    quest_id         uuid,  -- a quest's deliveries to one endpoint go out in order
    occurred_at      timestamptz NOT NULL,
    data             jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, id),
    UNIQUE (company_id, endpoint_id, activity_id),
    FOREIGN KEY (company_id, endpoint_id) REFERENCES webhook_endpoints (company_id, id)
        ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (company_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint
    ON webhook_deliveries (company_id, endpoint_id, activity_id DESC);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_endpoints
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_deliveries
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO system2_app;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO system2_app;

-- As 0006_directory_role: Supabase grants anon and authenticated every right on new tables
-- in public by default; take those grants back wherever those roles exist.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format(
            'REVOKE ALL ON TABLE public.webhook_endpoints, public.webhook_deliveries FROM %I',
            grantee);
    END LOOP;
END
$$;
