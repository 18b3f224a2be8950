-- kind: expand
-- Incident response (security page: affected account admins are emailed within 72 hours of
-- confirmation). An incident, its notices to admins, admins' email addresses, and one
-- cross-company read that says which companies an incident touched, in counts and ids.
--
-- `incidents` is the operator's record, not a tenant's: a summary written by us, the window,
-- the confirmation time (the 72-hour clock) and the company ids in scope. It holds no
-- company content, so it has no company_id and no tenant policy (there is no tenant to
-- compare with); the app role may read and add incidents but not change or delete one, so
-- the clock and the scope an incident was opened with stay as recorded.
--
-- `incident_notices` is a tenant table like 0001's: one row per incident and admin, the
-- claim written before the email is handed to the server ('sending'), then 'sent' or
-- 'failed'. A leftover 'sending' is an uncertain send that a re-run reports, never resends.
--
-- `incident_companies()` and `incident_admins()` read across companies for the operator's
-- `system2 incident affected`, as 0006_directory_role's lookups do: SECURITY DEFINER, owned by
-- system2_incidents — no login, no members, owns no table, not BYPASSRLS — which may SELECT
-- only the columns they count or answer with, through read-only policies of its own. They
-- return counts, ids, company names, admins' user ids and emails: never a goal, transcript,
-- note or audit payload. Old code calls neither and never reads the new column.

ALTER TABLE memberships ADD COLUMN email text CHECK (length(email) BETWEEN 3 AND 320);

CREATE TABLE incidents (
    id            uuid PRIMARY KEY,
    summary       text NOT NULL CHECK (length(summary) BETWEEN 1 AND 4000),
    since         timestamptz NOT NULL,
    until         timestamptz NOT NULL,
    confirmed_at  timestamptz NOT NULL,
    company_ids   uuid[],  -- the companies named when opened; NULL: those active in the window
    integration   text,    -- only companies whose credentials for it were decrypted then
    opened_by     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (since < until)
);

CREATE TABLE incident_notices (
    company_id    uuid NOT NULL REFERENCES companies (id),
    incident_id   uuid NOT NULL REFERENCES incidents (id),
    user_id       text NOT NULL,
    email         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    message_id    text,
    last_error    text,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    PRIMARY KEY (company_id, incident_id, user_id)
);

ALTER TABLE incident_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_notices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON incident_notices
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());

GRANT SELECT, INSERT ON incidents TO system2_app;
GRANT SELECT, INSERT, UPDATE ON incident_notices TO system2_app;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'system2_incidents') THEN
        CREATE ROLE system2_incidents
            NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;

-- As in 0006: a migrating role that is not a superuser joins the new role for the hand-over
-- only, and leaves it at the end of this file (or it would inherit its read-all policies).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT system2_incidents TO %I', current_user);
    END IF;
END
$$;

-- One row per company touched in [from_time, to_time): named in `only_companies` (listed even
-- when nothing of theirs moved) or, with no list, active in the window; with `via_integration`,
-- only companies whose credentials for it were decrypted in the window. A quest counts when it
-- was created in the window or ran during part of it.
CREATE FUNCTION public.incident_companies(
    from_time timestamptz, to_time timestamptz, only_companies uuid[], via_integration text
) RETURNS TABLE (
    company_id uuid, company_name text, quests bigint, audit_rows bigint,
    credentials_decrypted jsonb
)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    WITH q AS (
        SELECT x.company_id, count(*) AS n FROM public.quests AS x
        WHERE (x.created_at >= from_time AND x.created_at < to_time)
           OR (x.started_at < to_time AND coalesce(x.finished_at, 'infinity') >= from_time)
        GROUP BY x.company_id
    ), a AS (
        SELECT x.company_id, count(*) AS n FROM public.activity_log AS x
        WHERE x.occurred_at >= from_time AND x.occurred_at < to_time
        GROUP BY x.company_id
    ), u AS (
        SELECT y.company_id, jsonb_object_agg(y.integration, y.n ORDER BY y.integration) AS n
        FROM (SELECT x.company_id, x.integration, count(*) AS n
              FROM public.credential_uses AS x
              WHERE x.used_at >= from_time AND x.used_at < to_time
              GROUP BY x.company_id, x.integration) AS y
        GROUP BY y.company_id
    )
    SELECT c.id, c.name, coalesce(q.n, 0), coalesce(a.n, 0), coalesce(u.n, '{}'::jsonb)
    FROM public.companies AS c
    LEFT JOIN q ON q.company_id = c.id
    LEFT JOIN a ON a.company_id = c.id
    LEFT JOIN u ON u.company_id = c.id
    WHERE (CASE WHEN only_companies IS NULL
                THEN q.n IS NOT NULL OR a.n IS NOT NULL OR u.n IS NOT NULL
                ELSE c.id = ANY (only_companies) END)
      AND (via_integration IS NULL OR u.n ? via_integration)
    ORDER BY c.name, c.id
    $$;

-- The admins of the given companies, with the address their notice goes to (NULL: none on
-- file).
CREATE FUNCTION public.incident_admins(of_companies uuid[])
    RETURNS TABLE (company_id uuid, user_id text, email text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT m.company_id, m.user_id, m.email FROM public.memberships AS m
    WHERE m.company_id = ANY (of_companies) AND m.role = 'admin'
    ORDER BY m.company_id, m.user_id
    $$;

-- Owning a function needs CREATE on its schema at the moment it changes hands, not after.
GRANT USAGE, CREATE ON SCHEMA public TO system2_incidents;
ALTER FUNCTION public.incident_companies(timestamptz, timestamptz, uuid[], text)
    OWNER TO system2_incidents;
ALTER FUNCTION public.incident_admins(uuid[]) OWNER TO system2_incidents;
REVOKE CREATE ON SCHEMA public FROM system2_incidents;

GRANT SELECT (id, name) ON public.companies TO system2_incidents;
GRANT SELECT (company_id, created_at, started_at, finished_at) ON public.quests
    TO system2_incidents;
GRANT SELECT (company_id, occurred_at) ON public.activity_log TO system2_incidents;
GRANT SELECT (company_id, integration, used_at) ON public.credential_uses TO system2_incidents;
GRANT SELECT (company_id, user_id, role, email) ON public.memberships TO system2_incidents;
CREATE POLICY incidents ON public.companies FOR SELECT TO system2_incidents USING (true);
CREATE POLICY incidents ON public.quests FOR SELECT TO system2_incidents USING (true);
CREATE POLICY incidents ON public.activity_log FOR SELECT TO system2_incidents USING (true);
CREATE POLICY incidents ON public.credential_uses FOR SELECT TO system2_incidents USING (true);
CREATE POLICY incidents ON public.memberships FOR SELECT TO system2_incidents USING (true);

-- Only the app role may call them; Supabase's anon and authenticated get nothing of ours.
REVOKE ALL ON FUNCTION public.incident_companies(timestamptz, timestamptz, uuid[], text)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION public.incident_admins(uuid[]) FROM PUBLIC;
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION public.incident_companies(timestamptz, timestamptz, uuid[], text) FROM %I', grantee);
        EXECUTE format('REVOKE ALL ON FUNCTION public.incident_admins(uuid[]) FROM %I', grantee);
        EXECUTE format(
            'REVOKE ALL ON TABLE public.incidents, public.incident_notices FROM %I', grantee);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION public.incident_companies(timestamptz, timestamptz, uuid[], text)
    TO system2_app;
GRANT EXECUTE ON FUNCTION public.incident_admins(uuid[]) TO system2_app;

-- Last: the migrating role leaves system2_incidents (see above).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE system2_incidents FROM %I', current_user);
    END IF;
END
$$;
