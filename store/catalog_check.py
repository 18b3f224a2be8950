"""The live catalog against the tenancy invariants, checked by ``system2 migrate`` after the
newest migration: whatever made the schema so (a hand-run ALTER, a restored old dump, a
platform's default grants), a deploy's release command fails rather than serve on it.

Only the objects our migrations create are checked; other tables in the same database (an
upstream app's, Supabase's) are not ours to refuse.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from store.migration_check import created_objects, pg_temp_last, split_statements

# Roles Supabase grants every right on new objects in public by default (PostgREST's
# anonymous and signed-in users): none may touch ours.
PLATFORM_ROLES = ("anon", "authenticated")

_TENANT_TABLES = """
    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname = ANY(%(ours)s)
      AND (c.relname = 'companies' OR EXISTS (
            SELECT FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = c.oid AND a.attname = 'company_id' AND NOT a.attisdropped))
    ORDER BY c.relname
"""

# Each SECURITY DEFINER function of ours: its search_path, and whether the role it runs as
# could do more than its body needs — skip RLS, own a table (and so ALTER it), or lend its
# rights (and its policies) to members.
_DEFINERS = """
    SELECT p.proname,
           (SELECT substr(c, 13) FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%%'),
           r.rolname, r.rolsuper OR r.rolbypassrls,
           EXISTS (SELECT FROM pg_catalog.pg_class t
                   WHERE t.relowner = p.proowner AND t.relkind IN ('r', 'p')
                     AND t.relnamespace = 'public'::regnamespace),
           EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.roleid = p.proowner)
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
    WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef AND p.proname = ANY(%(ours)s)
    ORDER BY p.proname
"""

# Rights granted by name to a platform role on our tables, their sequences and functions.
_PLATFORM_GRANTS = """
    WITH ours AS (
        SELECT c.oid, c.relname AS name, c.relacl AS acl FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND (
            c.relname = ANY(%(ours)s)
            OR EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class t
                       ON t.oid = d.refobjid
                       WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                         AND d.deptype IN ('a', 'i') AND t.relname = ANY(%(ours)s)))
        UNION ALL
        SELECT p.oid, p.proname, p.proacl FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%(ours)s)
    )
    SELECT DISTINCT r.rolname, o.name FROM ours o, aclexplode(o.acl) a
    JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
    WHERE r.rolname = ANY(%(platform)s)
    ORDER BY 1, 2
"""


# Engineers' reads (0013): every table of ours the operator role may read holds it to a live
# grant with a restrictive policy of its own (its own grants and the schema's version aside),
# and no login in it also holds rights that read without one. Roles are the cluster's, so
# this looks at them only where the role exists.
_OPERATOR_TABLES = """
    SELECT c.relname FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
      AND c.relname = ANY(%(ours)s)
      AND c.relname NOT IN ('support_grants', 'schema_migrations')
      AND has_any_column_privilege('system2_operator', c.oid, 'SELECT')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy p
                      WHERE p.polrelid = c.oid AND NOT p.polpermissive
                        AND p.polcmd IN ('r', '*')
                        AND 'system2_operator'::regrole = ANY(p.polroles)
                        AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) LIKE 'support_live(%%')
    ORDER BY 1
"""
# Every role that holds system2_operator's rights, however indirectly: a plain login each.
_OPERATOR_LOGINS = """
    WITH RECURSIVE holders(oid) AS (
        SELECT m.member FROM pg_catalog.pg_auth_members m
        WHERE m.roleid = 'system2_operator'::regrole
        UNION
        SELECT m.member FROM pg_catalog.pg_auth_members m JOIN holders h ON m.roleid = h.oid
    )
    SELECT r.rolname FROM pg_catalog.pg_roles r JOIN holders h ON h.oid = r.oid
    WHERE r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolreplication
       OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                  WHERE m.member = r.oid AND m.roleid <> 'system2_operator'::regrole
                    AND m.roleid NOT IN (SELECT oid FROM holders))
    ORDER BY 1
"""


def unsafe_catalog(conn: psycopg.Connection[Any], migrations: Iterable[str]) -> list[str]:
    """What in the live catalog breaks tenancy, for the objects ``migrations`` (their SQL)
    create; empty when nothing does."""
    ours = sorted({name for text in migrations for name in created_objects(split_statements(text))})
    args = {"ours": ours, "platform": list(PLATFORM_ROLES)}
    problems = [
        f"table {name} has row-level security {'forced' if forced else 'not forced'}"
        f"{'' if enabled else ', not enabled'}{'' if policy else ', no policy'}"
        for name, enabled, forced, policy in conn.execute(_TENANT_TABLES, args).fetchall()
        if not (enabled and forced and policy)
    ]
    for name, path, owner, privileged, owns_table, lends in conn.execute(
        _DEFINERS, args
    ).fetchall():
        schemas = [s.strip().strip('"') for s in path.split(",")] if path else None
        if not pg_temp_last(schemas):
            problems.append(f"SECURITY DEFINER {name}() does not search pg_temp last")
        if privileged:
            problems.append(f"SECURITY DEFINER {name}() is owned by a superuser or BYPASSRLS role")
        if owns_table:
            problems.append(f"SECURITY DEFINER {name}() is owned by {owner}, who owns tables")
        if lends:
            problems.append(f"SECURITY DEFINER {name}() is owned by {owner}, which has members")
    problems.extend(
        f"{role} holds rights on {name}"
        for role, name in conn.execute(_PLATFORM_GRANTS, args).fetchall()
    )
    if conn.execute("SELECT to_regrole('system2_operator')").fetchone() != (None,):
        problems.extend(
            f"system2_operator reads {name} with no restrictive policy holding it to a grant"
            for (name,) in conn.execute(_OPERATOR_TABLES, args).fetchall()
        )
        problems.extend(
            f"engineer login {name} could read without a grant (superuser, BYPASSRLS, "
            "CREATEROLE, REPLICATION, or a member of another role)"
            for (name,) in conn.execute(_OPERATOR_LOGINS).fetchall()
        )
    return problems
