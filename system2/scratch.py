"""Scratch databases for tests and benchmarks: a fresh Postgres database (migrated) and a
private numbered Redis database, both released afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from messages.redis_keys import scratch_lock_key
from store.migrate import migrate
from system2.errors import System2Error

APP_ROLE = "s2_app"
ENGINEER = "engineer@scratch.test"  # the engineer whose login a scratch database enrolls


@contextmanager
def scratch_postgres(
    base_admin_url: str, *, prefix: str = "s2scratch", upto: int | None = None
) -> Iterator[tuple[str, str]]:
    """(admin url, app url) of a new database on the server of ``base_admin_url``, migrated
    to the newest schema (or to version ``upto``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_url = make_conninfo(base_admin_url, dbname=name)
    params = {
        k: v
        for k, v in conninfo_to_dict(base_admin_url).items()
        if k not in ("user", "password", "dbname")
    }
    app_url = make_conninfo("", **params, user=APP_ROLE, dbname=name)
    migrate(admin_url, app_url, operator_url=operator_url(app_url), upto=upto)
    try:
        yield admin_url, app_url
    finally:
        with psycopg.connect(
            make_conninfo(base_admin_url, dbname="postgres"), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def operator_url(app_url: str, engineer: str = ENGINEER) -> str:
    """An engineer's URL to the scratch database of ``app_url`` (their own login)."""
    return make_conninfo(app_url, user=engineer)


@contextmanager
def scratch_redis(base_url: str) -> Iterator[str]:
    """A numbered Redis database (1..15) reserved with a lock key, flushed before and after."""
    control = redis.Redis.from_url(base_url)
    token = uuid.uuid4().hex
    for n in range(1, 16):
        if control.set(scratch_lock_key(n), token, nx=True, ex=3600):
            break
    else:
        raise System2Error("no free Redis database: all 15 scratch locks are held")
    url = with_redis_db(base_url, n)
    redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        if control.get(scratch_lock_key(n)) == token.encode():
            control.delete(scratch_lock_key(n))
        control.close()


def with_redis_db(url: str, n: int) -> str:
    """``url`` with its database number replaced (TCP and unix-socket URLs)."""
    if url.startswith("unix://"):
        head, _, query = url.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("db=")]
        return f"{head}?{'&'.join([*params, f'db={n}'])}"
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}/{n}"
