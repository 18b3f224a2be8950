-- kind: expand
-- Support access (security page: "engineers do not have standing read access to Customer
-- Content; access for debugging customer-reported issues is logged and time-limited").
--
-- A support grant admits one engineer to one company's content until it expires or is
-- revoked. Engineers read through system2_operator, a role of its own (login roles such as
-- s2_operator join it), never the app role: a RESTRICTIVE policy on each table it may read
-- admits a company's rows only while the engineer named in the transaction (`app.operator`)
-- holds a live grant for that company. Restrictive policies AND with the tenant policies
-- (which name no role and so apply to it too): the operator must still set the tenant, and
-- even then sees nothing without a grant. It reads no credentials (not even their columns),
-- webhooks, guard limits or charges, and may append only its own `support.read` audit rows.
--
-- Grants are written by the app role (`system2 support grant`, by whoever holds the app's
-- credentials) and expire by time alone: no job has to run for access to end. Their
-- creation, revocation and expiry are rows in the company's activity_log, which its admins
-- read in the product. Old code knows none of this.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'system2_operator') THEN
        CREATE ROLE system2_operator
            NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;

CREATE TABLE support_grants (
    id               uuid PRIMARY KEY,
    company_id       uuid NOT NULL REFERENCES companies (id),
    engineer         text NOT NULL CHECK (engineer = lower(engineer) AND length(engineer) BETWEEN 3 AND 254),
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    granted_by       text NOT NULL CHECK (length(granted_by) BETWEEN 1 AND 254),
    granted_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    revoked_by       text,
    expiry_logged_at timestamptz,  -- when the expiry's audit row was written
    CHECK (expires_at > granted_at)
);
CREATE INDEX support_grants_live ON support_grants (company_id, engineer, expires_at)
    WHERE revoked_at IS NULL;
CREATE INDEX support_grants_to_log ON support_grants (company_id, expires_at)
    WHERE revoked_at IS NULL AND expiry_logged_at IS NULL;

-- The engineer a transaction reads for, or NULL (also when a pooled session left '').
CREATE FUNCTION app_operator() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.operator', true), '') $$;

-- Whether the transaction's engineer holds a live grant for `company`. With the caller's
-- rights: run by the operator, it sees only the operator's own grants (policy below).
CREATE FUNCTION support_live(company uuid) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT EXISTS (
            SELECT FROM public.support_grants AS g
            WHERE g.company_id = company AND g.engineer = public.app_operator()
              AND g.revoked_at IS NULL AND g.expires_at > pg_catalog.now())
    $$;

ALTER TABLE support_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON support_grants TO system2_app
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());
-- An engineer's own grants, in every company (what `quest show ID` searches for the quest):
-- ids, reasons and times, no content.
CREATE POLICY own_grants ON support_grants FOR SELECT TO system2_operator
    USING (engineer = app_operator());
GRANT SELECT, INSERT, UPDATE ON support_grants TO system2_app;
GRANT SELECT ON support_grants TO system2_operator;

-- What an engineer under a grant may read: the company's name, members, quests with their
-- steps, notes, tool calls and audit trail.
CREATE POLICY support_grant ON companies AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(id));
CREATE POLICY support_grant ON memberships AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
CREATE POLICY support_grant ON quests AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
CREATE POLICY support_grant ON quest_steps AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
CREATE POLICY support_grant ON notes AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
CREATE POLICY support_grant ON tool_calls AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
CREATE POLICY support_grant ON activity_log AS RESTRICTIVE FOR SELECT TO system2_operator
    USING (support_live(company_id));
-- ... and the one row it writes: who read what, under which grant.
CREATE POLICY support_read ON activity_log AS RESTRICTIVE FOR INSERT TO system2_operator
    WITH CHECK (support_live(company_id) AND actor_type = 'operator'
                AND actor_id = app_operator() AND action = 'support.read');

GRANT USAGE ON SCHEMA public TO system2_operator;
GRANT SELECT ON companies, memberships, quests, quest_steps, notes, tool_calls, activity_log
    TO system2_operator;
GRANT INSERT ON activity_log TO system2_operator;
GRANT SELECT ON schema_migrations TO system2_operator;
-- As 0006_directory_role: Supabase grants anon and authenticated every right on new tables
-- and functions in public by default; take those grants back wherever those roles exist.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE public.support_grants FROM %I', grantee);
        EXECUTE format(
            'REVOKE ALL ON FUNCTION public.app_operator(), public.support_live(uuid) FROM %I',
            grantee);
    END LOOP;
END
$$;
