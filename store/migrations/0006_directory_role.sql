-- kind: contract
-- contracts: 0003_integrations, 0004_cancel
-- The directory lookups (company_ids(), quest_company()) no longer run with the owner's
-- rights, and row-level security is forced again on companies and quests.
--
-- 0003 and 0004 made both functions SECURITY DEFINER, owned by the migrating role (a
-- superuser in most set-ups), with `search_path = public`: pg_temp was still searched first,
-- so any session of the app role could shadow `companies` or `quests` with a temporary view
-- over a function of its own and run it as the owner. And FORCE was switched off on the two
-- tables so that the owner could read across tenants.
--
-- Now: each function names every object with its schema, pins `search_path` with pg_temp
-- last, and is owned by system2_directory, a role made only for it: no login, no
-- membership, SELECT on the id columns it answers with and nothing else, and a policy of its
-- own on each table (read-only, every row). The owner is bound by the policies again.
--
-- A contract step of 0003 and 0004 because the release check counts FORCE and REVOKE as
-- breaking; neither changes what the previous release's code (the app role, which FORCE
-- does not concern, calling the same two functions) can do.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'system2_directory') THEN
        CREATE ROLE system2_directory
            NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;

-- A role that is not a superuser may give a function away only to a role it belongs to, and
-- grant rights on it only as a member of its owner: it joins system2_directory for the
-- hand-over and leaves it at the end of this file, or it would inherit the directory's
-- policies and read every company and quest despite FORCE.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT system2_directory TO %I', current_user);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION public.company_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT c.id FROM public.companies AS c ORDER BY c.id $$;

CREATE OR REPLACE FUNCTION public.quest_company(quest uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT q.company_id FROM public.quests AS q WHERE q.id = quest $$;

-- Owning a function needs CREATE on its schema at the moment it changes hands, not after.
GRANT USAGE, CREATE ON SCHEMA public TO system2_directory;
ALTER FUNCTION public.company_ids() OWNER TO system2_directory;
ALTER FUNCTION public.quest_company(uuid) OWNER TO system2_directory;
REVOKE CREATE ON SCHEMA public FROM system2_directory;

GRANT SELECT (id) ON public.companies TO system2_directory;
GRANT SELECT (id, company_id) ON public.quests TO system2_directory;
CREATE POLICY directory ON public.companies FOR SELECT TO system2_directory USING (true);
CREATE POLICY directory ON public.quests FOR SELECT TO system2_directory USING (true);

ALTER TABLE public.companies FORCE ROW LEVEL SECURITY;
ALTER TABLE public.quests FORCE ROW LEVEL SECURITY;

-- Only the app role may call them. Supabase grants anon and authenticated every right on new
-- tables, sequences and functions in public by default, which REVOKE ... FROM PUBLIC does
-- not undo: take those grants back from our objects wherever those roles exist.
REVOKE ALL ON FUNCTION public.company_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.quest_company(uuid) FROM PUBLIC;
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format(
            'REVOKE ALL ON FUNCTION public.company_ids(), public.quest_company(uuid), '
            'public.app_company_id(), public.activity_log_append_only() FROM %I', grantee);
        EXECUTE format(
            'REVOKE ALL ON TABLE public.companies, public.memberships, public.quests, '
            'public.quest_steps, public.integration_credentials, public.notes, '
            'public.activity_log, public.company_limits, public.charges, '
            'public.credential_uses, public.tool_calls, public.schema_migrations FROM %I',
            grantee);
        EXECUTE format(
            'REVOKE ALL ON SEQUENCE public.activity_log_id_seq, '
            'public.credential_uses_id_seq FROM %I', grantee);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION public.company_ids() TO system2_app;
GRANT EXECUTE ON FUNCTION public.quest_company(uuid) TO system2_app;

-- Last: the migrating role leaves system2_directory (see the top), having granted EXECUTE on
-- the functions it now owns.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE system2_directory FROM %I', current_user);
    END IF;
END
$$;
