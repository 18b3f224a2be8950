"""Code without a loop uses the store through one (``runtime.loop_thread``): a transaction
runs on the loop while the calling thread waits. What the caller would notice: a stop raised
into the waiting thread (Dramatiq's time limit) rolls the transaction back rather than letting
it commit behind the caller's back; the call runs with the caller's log bindings; and the
call's own ``TimeoutError`` is the call's, not a wait that never ends."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
import time
import uuid

import pytest

from runtime.loop_thread import LoopThread
from store import TenantTx
from store import companies as companies_store
from tests.conftest import Tenant
from tests.support import InTenant


class Stopped(Exception):
    """Raised into a thread, as Dramatiq's TimeLimit raises TimeLimitExceeded."""


def raise_into(thread: threading.Thread, exc: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident or 0), ctypes.py_object(exc)
    )


def test_a_stop_raised_into_the_waiting_thread_rolls_the_transaction_back(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    user = f"late-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, object] = {}

    async def slow_write(tx: TenantTx) -> None:
        await companies_store.add_member(tx, user, "member")
        await tx.execute("SELECT pg_sleep(3)")

    def step() -> None:
        started = time.monotonic()
        try:
            in_tenant(tenant.id, slow_write)
            outcome["finished"] = True
        except Stopped:
            outcome["stopped_after_s"] = time.monotonic() - started

    thread = threading.Thread(target=step)
    thread.start()
    time.sleep(0.5)  # the member row is written, the transaction still open
    raise_into(thread, Stopped)
    thread.join(10)
    assert "finished" not in outcome
    assert float(outcome["stopped_after_s"]) < 2.5, "the stop waited for the transaction"  # type: ignore[arg-type]
    role = in_tenant(tenant.id, lambda tx: companies_store.member_role(tx, user))
    assert role is None, "the stopped transaction committed"


def test_the_call_runs_with_the_callers_context_and_its_own_timeout_is_its_own() -> None:
    loop = LoopThread("test-loop").start()
    bound: contextvars.ContextVar[str] = contextvars.ContextVar("bound", default="unbound")
    try:
        bound.set("quest-42")

        async def read() -> str:
            return bound.get()

        assert loop.run(read()) == "quest-42"

        async def gives_up() -> None:
            raise TimeoutError("the call's own")

        with pytest.raises(TimeoutError, match="the call's own"):
            loop.run(gives_up())

        with pytest.raises(TimeoutError):
            loop.run(asyncio.sleep(10), timeout_s=0.2)
    finally:
        loop.stop()
