"""The control pool lives on its own loop and thread: a transaction asked for from any loop
runs there, on real Postgres, and nothing uses its connections from another loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from runtime.settings import Settings
from store import TenantTx
from tests.conftest import Tenant
from tests.support import InTenant
from workers.control_loop import ControlDatabase, ControlLoop


@pytest.fixture
def control_db(settings: Settings, in_tenant: InTenant) -> Iterator[ControlDatabase]:
    loop = ControlLoop(name="s2-control-test")
    loop.start()
    db = ControlDatabase(loop, settings.database_url, max_size=1, name="control-test")
    in_tenant.run(db.open())
    yield db
    in_tenant.run(db.close())
    loop.stop()


def test_a_transaction_runs_on_the_control_thread_whichever_loop_asks(
    control_db: ControlDatabase, in_tenant: InTenant, tenant: Tenant
) -> None:
    async def where(tx: TenantTx) -> tuple[str, str]:
        cur = await tx.execute("SELECT current_setting('app.company_id')")
        row = await cur.fetchone()
        assert row is not None
        return threading.current_thread().name, str(row[0])

    thread, company = in_tenant.run(control_db.in_tenant(tenant.id, where))
    assert (thread, company) == ("s2-control-test", str(tenant.id))
    assert threading.current_thread().name != thread


def test_its_connections_are_refused_to_another_loop(
    control_db: ControlDatabase, in_tenant: InTenant
) -> None:
    async def borrow() -> None:
        async with control_db.connection():
            pass

    with pytest.raises(RuntimeError, match="through in_tenant"):
        in_tenant.run(borrow())


def test_a_stopped_control_loop_refuses_work() -> None:
    loop = ControlLoop()
    loop.start()
    loop.stop()

    async def nothing() -> int:
        return 1

    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(loop.run(nothing()))
