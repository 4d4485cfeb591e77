"""The connection pool serves whoever waits longest first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from api.core.db import FairQueue, FairQueuePool, make_engine


def taking(queue: AsyncAdaptedQueue[Any], timeout: float | None = None) -> asyncio.Task[Any]:
    """A task that takes from the queue as the pool does: blocking, inside a greenlet."""
    return asyncio.create_task(greenlet_spawn(queue.get, True, timeout))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def served_in_turn(queue: AsyncAdaptedQueue[Any]) -> dict[str, Any]:
    """B and C wait for a connection. E asks just before one comes back: its task is already
    scheduled when the pool gets the connection, as a request that arrived in the same turn of
    the event loop would be. Then two more come back."""
    b = taking(queue)
    await settle()
    c = taking(queue)
    await settle()
    e = taking(queue)
    queue.put_nowait("first")
    await settle()
    queue.put_nowait("second")
    await settle()
    queue.put_nowait("third")
    await settle()
    return {"b": await b, "c": await c, "e": await e}


async def test_a_connection_that_comes_back_goes_to_the_longest_waiter():
    assert await served_in_turn(FairQueue(maxsize=3)) == {"b": "first", "c": "second", "e": "third"}


async def test_sqlalchemys_own_queue_lets_a_newcomer_go_first():
    """Why FairQueue exists: with the queue it replaces, E takes the first connection while B,
    woken for it, is still on its way, and B goes back to the end of the line."""
    served = await served_in_turn(AsyncAdaptedQueue(maxsize=3))
    assert served == {"e": "first", "c": "second", "b": "third"}


async def test_nobody_takes_an_idle_connection_while_others_wait():
    queue = FairQueue(maxsize=3)
    b = taking(queue)
    await settle()
    queue.put_nowait("first")  # handed to B: nothing is idle for a newcomer
    assert queue.qsize() == 0
    with pytest.raises(Empty):
        await greenlet_spawn(queue.get, False, None)
    assert await b == "first"
    queue.put_nowait("second")  # nobody waits: idle, and taken at once
    assert queue.qsize() == 1
    assert await greenlet_spawn(queue.get, True, None) == "second"


async def test_a_wait_that_times_out_leaves_the_line():
    queue = FairQueue(maxsize=3)
    late = taking(queue, timeout=0.05)
    with pytest.raises(Empty):
        await late
    queue.put_nowait("first")  # not to the waiter that gave up
    assert queue.qsize() == 1
    assert await greenlet_spawn(queue.get, True, None) == "first"


async def test_a_waiter_cancelled_as_it_is_served_passes_the_connection_on():
    queue = FairQueue(maxsize=3)
    b = taking(queue)
    await settle()
    c = taking(queue)
    await settle()
    queue.put_nowait("first")  # B's, but B is cancelled before it runs
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert await c == "first"
    assert queue.qsize() == 0


async def test_the_engine_serves_checkouts_in_the_order_they_came(settings):
    one = settings.db.model_copy(update={"pool_size": 1, "max_overflow": 0})
    engine: AsyncEngine = make_engine(one)
    try:
        assert isinstance(engine.pool, FairQueuePool)
        order: list[str] = []
        first = await engine.connect()

        async def query(name: str) -> None:
            async with engine.connect() as conn:
                order.append(name)
                assert await conn.scalar(text("SELECT 1")) == 1

        waiting = []
        for name in ("b", "c", "d"):
            waiting.append(asyncio.create_task(query(name)))
            await asyncio.sleep(0.02)
        await first.close()
        await asyncio.gather(*waiting)
        assert order == ["b", "c", "d"]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
