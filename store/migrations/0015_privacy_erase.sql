-- kind: expand
-- Erasure (GDPR art. 17, CCPA "right to delete"): `system2 privacy erase` and `system2
-- company delete` (store/privacy.py). The content a user gave us, or a company's, is
-- redacted in place or removed; the audit skeleton (who, what, when, which ids) stays, and the
-- erasure is itself an audit row.
--
-- Two functions do it, erase_user(subject, erased_by) and erase_company(erased_by), each in
-- the transaction's tenant only (app_company_id(); refused without one). They run as
-- system2_privacy, a role made only for them, as 0006 made system2_directory: no login, no
-- members, owns no table, neither superuser nor BYPASSRLS; rights on the columns its bodies
-- read and write and nothing else. The tables' `tenant` policies (TO PUBLIC) bind it like any
-- role; its one policy of its own lets it UPDATE activity_log rows of the tenant.
--
-- The audit trail stays append-only for everyone: the app role still holds neither UPDATE nor
-- DELETE on it, and the trigger still refuses UPDATE, DELETE and TRUNCATE to every role, the
-- owner included, except one UPDATE: by system2_privacy, changing nothing but `rationale` (to
-- the marker, or NULL when it was NULL) and `payload` (to its numbers and booleans only).
--
-- Expand: the replaced trigger function admits more than before only to a role the previous
-- release never uses (it has no members; only these new functions run as it), so old code
-- sees the same append-only table; a new column (companies.deleted_at) is nullable.

ALTER TABLE public.companies ADD COLUMN deleted_at timestamptz;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'system2_privacy') THEN
        CREATE ROLE system2_privacy
            NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;

-- As in 0006: a migrating role that is not a superuser joins system2_privacy to hand the
-- functions over and grant EXECUTE on them, and leaves it at the end of this file.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT system2_privacy TO %I', current_user);
    END IF;
END
$$;

-- What erasure keeps of a JSON object of ours (an audit row's payload, an event's data): its
-- numbers and booleans (amounts, counts, flags). Strings, objects and arrays may hold content.
CREATE FUNCTION public.erased_scalars(j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value)
                     FROM pg_catalog.jsonb_each(CASE pg_catalog.jsonb_typeof(j)
                          WHEN 'object' THEN j ELSE '{}'::jsonb END) AS e
                     WHERE pg_catalog.jsonb_typeof(e.value) IN ('number', 'boolean')),
                    '{}'::jsonb)
    $$;

-- A step's reply, erased as retention redacts it (store/retention.py): the marker, then
-- which tools it called (their ids and names), without their inputs. NULL stays NULL.
CREATE FUNCTION public.erased_content(j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT CASE WHEN j IS NULL THEN NULL ELSE
        '[{"type": "text", "text": "[erased]"}]'::jsonb || COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'type', 'tool_use', 'id', b.value->'id', 'name', b.value->'name',
                       'input', '{}'::jsonb) ORDER BY b.ordinality)
            FROM pg_catalog.jsonb_array_elements(CASE pg_catalog.jsonb_typeof(j)
                 WHEN 'array' THEN j ELSE '[]'::jsonb END) WITH ORDINALITY AS b
            WHERE b.value->>'type' = 'tool_use'), '[]'::jsonb)
    END
    $$;

-- A step's stored audit events (re-sent on redelivery), erased as their rows are: each keeps
-- its key, actor, action, target and ids; its rationale becomes the marker, its data scalars.
CREATE FUNCTION public.erased_events(j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT COALESCE((
        SELECT pg_catalog.jsonb_agg(CASE pg_catalog.jsonb_typeof(e.value)
            WHEN 'object' THEN e.value || pg_catalog.jsonb_build_object(
                'rationale', CASE WHEN COALESCE(e.value->'rationale', 'null'::jsonb) = 'null'::jsonb
                                  THEN 'null'::jsonb ELSE '"[erased]"'::jsonb END,
                'data', public.erased_scalars(e.value->'data'))
            ELSE e.value END ORDER BY e.ordinality)
        FROM pg_catalog.jsonb_array_elements(CASE pg_catalog.jsonb_typeof(j)
             WHEN 'array' THEN j ELSE '[]'::jsonb END) WITH ORDINALITY AS e), '[]'::jsonb)
    $$;

-- A recorded tool call's result (what a redelivered step would return instead of calling
-- again), erased: still a valid outcome, its text the marker, its data scalars.
CREATE FUNCTION public.erased_tool_result(j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT CASE WHEN j IS NULL THEN NULL ELSE pg_catalog.jsonb_strip_nulls(
        pg_catalog.jsonb_build_object(
            'content', '[erased]', 'is_error', COALESCE(j->'is_error', 'false'::jsonb),
            'action', j->'action', 'target', j->'target'))
        || pg_catalog.jsonb_build_object('data', public.erased_scalars(j->'data'))
    END
    $$;

-- Append-only, but for the erasure's exact redaction (see the top).
CREATE OR REPLACE FUNCTION public.activity_log_append_only() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_LEVEL = 'ROW' AND current_user = 'system2_privacy' THEN
        IF (NEW.id, NEW.company_id, NEW.occurred_at, NEW.recorded_at, NEW.actor_type,
            NEW.actor_id, NEW.action, NEW.target, NEW.originating_message_id, NEW.quest_id,
            NEW.idempotency_key)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.company_id, OLD.occurred_at, OLD.recorded_at, OLD.actor_type,
            OLD.actor_id, OLD.action, OLD.target, OLD.originating_message_id, OLD.quest_id,
            OLD.idempotency_key)
           AND NEW.rationale IS NOT DISTINCT FROM
               (CASE WHEN OLD.rationale IS NULL THEN NULL ELSE '[erased]' END)
           AND NEW.payload = public.erased_scalars(OLD.payload)
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'activity_log is append-only';
END
$$;

-- The erasure of the tenant's quests ``quests`` (and, with ``everything``, of all the
-- tenant's notes, audit rows and memberships), as ``by``: counts of the rows it changed.
-- Runs as its caller, erase_user() or erase_company() (as system2_privacy); nobody else may
-- call it.
CREATE FUNCTION public.privacy_erase(company uuid, quests uuid[], subject text, everything boolean)
    RETURNS jsonb
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    marker CONSTANT text := '[erased]';
    n_cancelled bigint;
    n_quests bigint;
    n_steps bigint;
    n_notes bigint;
    n_tools bigint;
    n_deliveries bigint;
    n_audit bigint;
    n_members bigint;
    n_notices bigint;
    n_grants bigint;
BEGIN
    UPDATE public.quests AS q
       SET status = 'cancelled', finished_at = now(), touched_at = now(), reason = marker,
           cancel_requested_at = COALESCE(q.cancel_requested_at, now()),
           cancel_reason = marker, cancelled_by = COALESCE(q.cancelled_by, 'system:privacy')
     WHERE q.company_id = company AND q.id = ANY (quests) AND q.status IN ('queued', 'running');
    GET DIAGNOSTICS n_cancelled = ROW_COUNT;

    -- request_hash too: an unsalted digest of the goal would confirm a guess at it.
    UPDATE public.quests AS q
       SET goal = marker,
           result = CASE WHEN q.result IS NULL THEN NULL ELSE marker END,
           reason = CASE WHEN q.reason IS NULL THEN NULL ELSE marker END,
           cancel_reason = CASE WHEN q.cancel_reason IS NULL THEN NULL ELSE marker END,
           request_hash = NULL
     WHERE q.company_id = company AND q.id = ANY (quests)
       AND (q.goal, q.result, q.reason, q.cancel_reason, q.request_hash) IS DISTINCT FROM
           (marker, CASE WHEN q.result IS NULL THEN NULL ELSE marker END,
            CASE WHEN q.reason IS NULL THEN NULL ELSE marker END,
            CASE WHEN q.cancel_reason IS NULL THEN NULL ELSE marker END, NULL);
    GET DIAGNOSTICS n_quests = ROW_COUNT;

    UPDATE public.quest_steps AS s
       SET content = public.erased_content(s.content), tool_results = '[]'::jsonb,
           events = public.erased_events(s.events), redacted_at = COALESCE(s.redacted_at, now())
     WHERE s.company_id = company AND s.quest_id = ANY (quests)
       AND (s.content, s.tool_results, s.events) IS DISTINCT FROM
           (public.erased_content(s.content), '[]'::jsonb, public.erased_events(s.events));
    GET DIAGNOSTICS n_steps = ROW_COUNT;

    DELETE FROM public.notes AS n
     WHERE n.company_id = company AND (everything OR n.quest_id = ANY (quests));
    GET DIAGNOSTICS n_notes = ROW_COUNT;

    UPDATE public.tool_calls AS t SET result = public.erased_tool_result(t.result)
     WHERE t.company_id = company AND t.quest_id = ANY (quests)
       AND t.result IS DISTINCT FROM public.erased_tool_result(t.result);
    GET DIAGNOSTICS n_tools = ROW_COUNT;

    -- A delivery's data is ids and words of ours, but for the audit row's rationale.
    UPDATE public.webhook_deliveries AS d SET data = d.data - 'reason'
     WHERE d.company_id = company AND d.quest_id = ANY (quests) AND d.data ? 'reason';
    GET DIAGNOSTICS n_deliveries = ROW_COUNT;

    UPDATE public.activity_log AS a
       SET rationale = CASE WHEN a.rationale IS NULL THEN NULL ELSE marker END,
           payload = public.erased_scalars(a.payload)
     WHERE a.company_id = company
       AND (everything OR (a.actor_type = 'user' AND a.actor_id = subject)
            OR a.quest_id = ANY (quests))
       AND (a.rationale IS DISTINCT FROM CASE WHEN a.rationale IS NULL THEN NULL ELSE marker END
            OR a.payload IS DISTINCT FROM public.erased_scalars(a.payload));
    GET DIAGNOSTICS n_audit = ROW_COUNT;

    DELETE FROM public.memberships AS m
     WHERE m.company_id = company AND (everything OR m.user_id = subject);
    GET DIAGNOSTICS n_members = ROW_COUNT;

    -- The record of an incident notice keeps who was told and when (0014), not the address.
    UPDATE public.incident_notices AS i SET email = marker
     WHERE i.company_id = company AND (everything OR i.user_id = subject) AND i.email <> marker;
    GET DIAGNOSTICS n_notices = ROW_COUNT;

    -- A support grant's reason (0013) is ours, but may quote the customer: it goes with them.
    UPDATE public.support_grants AS g SET reason = marker
     WHERE g.company_id = company AND everything AND g.reason <> marker;
    GET DIAGNOSTICS n_grants = ROW_COUNT;

    RETURN pg_catalog.jsonb_build_object(
        'quests', n_quests, 'quests_cancelled', n_cancelled, 'steps', n_steps,
        'notes', n_notes, 'tool_calls', n_tools, 'webhook_deliveries', n_deliveries,
        'audit_rows', n_audit, 'memberships', n_members, 'incident_notices', n_notices,
        'support_grants', n_grants);
END
$$;

CREATE FUNCTION public.erase_user(subject text, erased_by text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    company CONSTANT uuid := public.app_company_id();
    mine uuid[];
    counts jsonb;
BEGIN
    IF company IS NULL THEN
        RAISE EXCEPTION 'erase_user needs the transaction''s tenant (app.company_id)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF subject IS NULL OR length(subject) NOT BETWEEN 1 AND 200
       OR erased_by IS NULL OR length(erased_by) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'erase_user needs a user id and who erases (1 to 200 characters each)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT COALESCE(pg_catalog.array_agg(q.id), '{}') INTO mine
      FROM public.quests AS q WHERE q.company_id = company AND q.created_by = 'user:' || subject;
    counts := public.privacy_erase(company, mine, subject, false);
    INSERT INTO public.activity_log
        (company_id, occurred_at, actor_type, actor_id, action, target, payload, idempotency_key)
    VALUES (company, now(), 'operator', erased_by, 'privacy.erased', 'user:' || subject, counts,
            'privacy.erased:' || pg_catalog.gen_random_uuid());
    RETURN counts;
END
$$;

CREATE FUNCTION public.erase_company(erased_by text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    company CONSTANT uuid := public.app_company_id();
    every_quest uuid[];
    counts jsonb;
    n_credentials bigint;
    n_deliveries bigint;
    n_endpoints bigint;
    n_company bigint;
BEGIN
    IF company IS NULL THEN
        RAISE EXCEPTION 'erase_company needs the transaction''s tenant (app.company_id)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF erased_by IS NULL OR length(erased_by) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'erase_company needs who erases (1 to 200 characters)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM public.companies AS c WHERE c.id = company) THEN
        RAISE EXCEPTION 'no company %', company USING ERRCODE = 'no_data_found';
    END IF;
    SELECT COALESCE(pg_catalog.array_agg(q.id), '{}') INTO every_quest
      FROM public.quests AS q WHERE q.company_id = company;
    counts := public.privacy_erase(company, every_quest, NULL, true);

    DELETE FROM public.integration_credentials AS i WHERE i.company_id = company;
    GET DIAGNOSTICS n_credentials = ROW_COUNT;
    DELETE FROM public.webhook_deliveries AS d WHERE d.company_id = company;
    GET DIAGNOSTICS n_deliveries = ROW_COUNT;
    DELETE FROM public.webhook_endpoints AS e WHERE e.company_id = company;
    GET DIAGNOSTICS n_endpoints = ROW_COUNT;
    UPDATE public.companies AS c SET name = 'deleted company', deleted_at = now()
     WHERE c.id = company AND c.deleted_at IS NULL;
    GET DIAGNOSTICS n_company = ROW_COUNT;

    counts := counts || pg_catalog.jsonb_build_object(
        'webhook_deliveries', n_deliveries,  -- each delivery once: deleted (redacted before)
        'credentials', n_credentials, 'webhook_endpoints', n_endpoints, 'company', n_company);
    INSERT INTO public.activity_log
        (company_id, occurred_at, actor_type, actor_id, action, target, payload, idempotency_key)
    VALUES (company, now(), 'operator', erased_by, 'company.deleted', 'company:' || company,
            counts, 'company.deleted:' || pg_catalog.gen_random_uuid());
    RETURN counts;
END
$$;

-- Owning a function needs CREATE on its schema at the moment it changes hands, not after.
GRANT USAGE, CREATE ON SCHEMA public TO system2_privacy;
ALTER FUNCTION public.privacy_erase(uuid, uuid[], text, boolean) OWNER TO system2_privacy;
ALTER FUNCTION public.erase_user(text, text) OWNER TO system2_privacy;
ALTER FUNCTION public.erase_company(text) OWNER TO system2_privacy;
REVOKE CREATE ON SCHEMA public FROM system2_privacy;

-- What the bodies read and write, column by column; nothing else.
GRANT SELECT (id, name, deleted_at), UPDATE (name, deleted_at) ON public.companies
    TO system2_privacy;
GRANT SELECT (company_id, user_id), DELETE ON public.memberships TO system2_privacy;
GRANT SELECT (id, company_id, created_by, status, goal, result, reason, cancel_reason,
              cancel_requested_at, cancelled_by, request_hash),
      UPDATE (status, finished_at, touched_at, goal, result, reason, cancel_requested_at,
              cancel_reason, cancelled_by, request_hash)
    ON public.quests TO system2_privacy;
GRANT SELECT (company_id, user_id, email), UPDATE (email) ON public.incident_notices
    TO system2_privacy;
GRANT SELECT (company_id, reason), UPDATE (reason) ON public.support_grants TO system2_privacy;
-- support_grants' policies name their roles (0013): this one is the erasure's.
CREATE POLICY privacy_erase ON public.support_grants TO system2_privacy
    USING (company_id = public.app_company_id())
    WITH CHECK (company_id = public.app_company_id());
GRANT SELECT (company_id, quest_id, step, content, tool_results, events, redacted_at),
      UPDATE (content, tool_results, events, redacted_at)
    ON public.quest_steps TO system2_privacy;
GRANT SELECT (id, company_id, quest_id), DELETE ON public.notes TO system2_privacy;
GRANT SELECT (company_id, idempotency_key, quest_id, result), UPDATE (result)
    ON public.tool_calls TO system2_privacy;
GRANT SELECT (company_id, id, endpoint_id, quest_id, data), UPDATE (data), DELETE
    ON public.webhook_deliveries TO system2_privacy;
GRANT SELECT (company_id, id), DELETE ON public.webhook_endpoints TO system2_privacy;
GRANT SELECT (company_id, id), DELETE ON public.integration_credentials TO system2_privacy;
GRANT SELECT (id, company_id, occurred_at, recorded_at, actor_type, actor_id, action, target,
              rationale, originating_message_id, quest_id, payload, idempotency_key),
      UPDATE (rationale, payload),
      INSERT (company_id, occurred_at, actor_type, actor_id, action, target, payload,
              idempotency_key)
    ON public.activity_log TO system2_privacy;
CREATE POLICY privacy_erase ON public.activity_log FOR UPDATE TO system2_privacy
    USING (company_id = public.app_company_id())
    WITH CHECK (company_id = public.app_company_id());

-- Only the app role may call the two erasures; the shared body, nobody but its owner.
REVOKE ALL ON FUNCTION public.privacy_erase(uuid, uuid[], text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.erase_user(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.erase_company(text) FROM PUBLIC;
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION public.erase_user(text, text), public.erase_company(text), public.privacy_erase(uuid, uuid[], text, boolean), public.erased_scalars(jsonb), public.erased_content(jsonb), public.erased_events(jsonb), public.erased_tool_result(jsonb) FROM %I', grantee);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION public.erase_user(text, text) TO system2_app;
GRANT EXECUTE ON FUNCTION public.erase_company(text) TO system2_app;

-- Last: the migrating role leaves system2_privacy (see the top).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE system2_privacy FROM %I', current_user);
    END IF;
END
$$;
