-- kind: expand
-- Support access (security page: "engineers do not have standing read access to Customer
-- Content; access for debugging customer-reported issues is logged and time-limited").
--
-- A support grant admits one engineer to one company's content until it expires or is
-- revoked. Each engineer signs in to Postgres as a login role of their own, named by their
-- email address and a member of system2_operator alone (`system2 support enroll`); the
-- session's user is who reads, and only a superuser could pass as someone else. A RESTRICTIVE
-- policy on each table the role may read admits a company's rows only while that engineer
-- holds a live grant for it. Restrictive policies AND with the tenant policies (which name no
-- role and so apply to it too): the engineer must still set the tenant, and even then sees
-- nothing without a grant. Liveness is judged at each statement's time, so a transaction
-- opened before the end reads nothing after it. The role reads no credentials (not even their
-- columns), webhooks, guard limits or charges, and may append only `support.read` audit
-- rows, which a trigger writes in full from the session (key, time, actor, grant): the
-- engineer's INSERT can neither backdate one nor take a key another row will need.
--
-- Grants are written by the app role (`system2 support grant`, by whoever holds the app's
-- credentials), from the database's now for at most a day; once made, only their revocation
-- and the note that their expiry was recorded can change, once each, at the database's now.
-- Their creation, revocation and expiry are rows in the company's activity_log, which its
-- admins read in the product. Old code knows none of this.
--
-- What policies cannot hide: Postgres evaluates leakproof comparisons (=, <) of a query's own
-- WHERE before a policy's, so EXPLAIN ANALYZE's row counts and the planner's estimates can
-- confirm guessed values of the tables an engineer may SELECT, without a grant; and a
-- REPEATABLE READ transaction keeps the snapshot in which a revoked grant was still live
-- (until the grant's own expiry, which statement time enforces). README, "Support access".

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
    engineer         text NOT NULL CHECK (engineer = lower(engineer) AND length(engineer) BETWEEN 3 AND 63),
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    granted_by       text NOT NULL CHECK (length(granted_by) BETWEEN 1 AND 254),
    granted_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    revoked_by       text,
    expiry_logged_at timestamptz,  -- when the expiry's audit row was written
    CHECK (expires_at > granted_at AND expires_at <= granted_at + interval '1 day')
);
CREATE INDEX support_grants_live ON support_grants (company_id, engineer, expires_at)
    WHERE revoked_at IS NULL;
CREATE INDEX support_grants_to_log ON support_grants (company_id, expires_at)
    WHERE revoked_at IS NULL AND expiry_logged_at IS NULL;

-- A grant's times are the database's: made now, for at most a day; revoked now, once; its
-- expiry recorded once it has expired, once. Nothing else changes (the app role may UPDATE
-- only those columns).
CREATE FUNCTION support_grants_clock() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.expires_at <= now() OR NEW.expires_at > now() + interval '1 day' THEN
            RAISE EXCEPTION 'a support grant lasts from now for at most a day';
        END IF;
        NEW.granted_at := now();
        NEW.revoked_at := NULL;
        NEW.revoked_by := NULL;
        NEW.expiry_logged_at := NULL;
        RETURN NEW;
    END IF;
    IF (OLD.revoked_at IS NOT NULL AND (NEW.revoked_at, NEW.revoked_by)
            IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_by))
       OR (OLD.expiry_logged_at IS NOT NULL
            AND NEW.expiry_logged_at IS DISTINCT FROM OLD.expiry_logged_at)
       OR (OLD.expiry_logged_at IS NULL AND NEW.expiry_logged_at IS NOT NULL
            AND (OLD.expires_at > now() OR OLD.revoked_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'a support grant is revoked, or its expiry recorded, once and in time';
    END IF;
    IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
        NEW.revoked_at := now();
    END IF;
    IF OLD.expiry_logged_at IS NULL AND NEW.expiry_logged_at IS NOT NULL THEN
        NEW.expiry_logged_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER support_grants_clock BEFORE INSERT OR UPDATE ON support_grants
    FOR EACH ROW EXECUTE FUNCTION support_grants_clock();

-- Whether the session's engineer holds a live grant for `company`, at this statement's time.
-- With the caller's rights: run by an engineer, it sees only their own grants (policy below).
CREATE FUNCTION support_live(company uuid) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT EXISTS (
            SELECT FROM public.support_grants AS g
            WHERE g.company_id = company AND g.engineer = session_user::text
              AND g.revoked_at IS NULL AND g.expires_at > statement_timestamp())
    $$;

ALTER TABLE support_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON support_grants TO system2_app
    USING (company_id = app_company_id()) WITH CHECK (company_id = app_company_id());
-- An engineer's own grants, in every company (where `quest show ID` looks for the quest).
CREATE POLICY own_grants ON support_grants FOR SELECT TO system2_operator
    USING (engineer = session_user::text);
GRANT SELECT, INSERT ON support_grants TO system2_app;
GRANT UPDATE (revoked_at, revoked_by, expiry_logged_at) ON support_grants TO system2_app;
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
-- ... and the one kind of row it writes: who read what, under which grant.
CREATE POLICY support_read ON activity_log AS RESTRICTIVE FOR INSERT TO system2_operator
    WITH CHECK (support_live(company_id) AND action = 'support.read');

-- A support.read row is the session's own, whoever inserts it: a fresh key, the statement's
-- time, the session's engineer, their live grant, what they ran (at most 100 characters),
-- and as its target the quest it names if they can see it, else the company. The engineers'
-- role may name no other column (not the id, nor the time it was recorded). Only rows of
-- that action fire it (the WHEN is checked before any call).
CREATE FUNCTION activity_log_support_read() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.quest_id IS NOT NULL AND NOT EXISTS (
            SELECT FROM public.quests AS q
            WHERE q.company_id = NEW.company_id AND q.id = NEW.quest_id) THEN
        NEW.quest_id := NULL;
    END IF;
    NEW.occurred_at := statement_timestamp();
    NEW.idempotency_key := 'support.read:' || gen_random_uuid()::text;
    NEW.actor_type := 'operator';
    NEW.actor_id := session_user::text;
    NEW.target := CASE WHEN NEW.quest_id IS NULL THEN 'company:' || NEW.company_id::text
                       ELSE 'quest:' || NEW.quest_id::text END;
    NEW.rationale := NULL;
    NEW.originating_message_id := NULL;
    NEW.payload := jsonb_build_object(
        'grant_id', (SELECT g.id FROM public.support_grants AS g
                     WHERE g.company_id = NEW.company_id AND g.engineer = session_user::text
                       AND g.revoked_at IS NULL AND g.expires_at > statement_timestamp()
                     ORDER BY g.expires_at DESC LIMIT 1),
        'read', left(NEW.payload->>'read', 100));
    RETURN NEW;
END
$$;
CREATE TRIGGER activity_log_support_read BEFORE INSERT ON activity_log
    FOR EACH ROW WHEN (NEW.action = 'support.read')
    EXECUTE FUNCTION activity_log_support_read();

GRANT USAGE ON SCHEMA public TO system2_operator;
GRANT SELECT ON companies, memberships, quests, quest_steps, notes, tool_calls, activity_log
    TO system2_operator;
GRANT INSERT (company_id, action, quest_id, payload) ON activity_log TO system2_operator;
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
        EXECUTE format('REVOKE ALL ON FUNCTION public.support_live(uuid) FROM %I', grantee);
        EXECUTE format('REVOKE ALL ON FUNCTION public.support_grants_clock() FROM %I', grantee);
        EXECUTE format(
            'REVOKE ALL ON FUNCTION public.activity_log_support_read() FROM %I', grantee);
    END LOOP;
END
$$;
