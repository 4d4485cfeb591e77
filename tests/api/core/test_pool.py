"""The connection pool serves whoever waits longest first."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, ClassVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

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


# --- what FairQueue relies on in SQLAlchemy ---------------------------------------------------
# FairQueue subclasses a private class of SQLAlchemy's (sqlalchemy.util.queue.AsyncAdaptedQueue)
# and is plugged in through a private attribute of the pool (_queue_class); pyproject.toml pins
# SQLAlchemy's minor version for it. These tests fail, saying what changed, when an upgrade
# moves any of it: FairQueue must then be checked against the new queue and pool.

STALE = "SQLAlchemy changed what FairQueue (api/core/db.py) relies on; re-read its queue and pool:"


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_private_queue_fairqueue_subclasses_is_unchanged():
    empty = inspect.Parameter.empty
    expected = {
        "__init__": [("self", empty), ("maxsize", 0), ("use_lifo", False)],
        "get": [("self", empty), ("block", True), ("timeout", None)],
        "get_nowait": [("self", empty)],
        "put": [("self", empty), ("item", empty), ("block", True), ("timeout", None)],
        "put_nowait": [("self", empty), ("item", empty)],
        "qsize": [("self", empty)],
    }
    problems = []
    for name, parameters in expected.items():
        method = getattr(AsyncAdaptedQueue, name, None)
        if method is None:
            problems.append(f"AsyncAdaptedQueue.{name} is gone")
        elif (found := _parameters(method)) != parameters:
            problems.append(f"AsyncAdaptedQueue.{name} takes {found}, not {parameters}")
    await_ = inspect.getattr_static(AsyncAdaptedQueue, "await_", None)
    if not isinstance(await_, staticmethod) or await_.__func__ is not await_only:
        problems.append(f"AsyncAdaptedQueue.await_ is {await_!r}, not staticmethod(await_only)")
    if not (issubclass(Empty, Exception) and issubclass(Full, Exception)):
        problems.append("sqlalchemy.util.queue.Empty or Full is no longer an exception")
    default = inspect.getattr_static(AsyncAdaptedQueuePool, "_queue_class", None)
    if default is not AsyncAdaptedQueue:
        problems.append(f"AsyncAdaptedQueuePool._queue_class is {default!r}, not AsyncAdaptedQueue")
    if "maxsize" not in vars(FairQueue(maxsize=3)) or FairQueue(maxsize=3).maxsize != 3:
        problems.append("AsyncAdaptedQueue.__init__ no longer keeps maxsize")
    assert not problems, "\n".join([STALE, *problems])


class _RecordingQueue(FairQueue):
    """FairQueue, noting how the pool calls the two methods it overrides."""

    calls: ClassVar[list[tuple[Any, ...]]] = []

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        self.calls.append(("get", block, timeout))
        return super().get(block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.calls.append(("put_nowait",))
        super().put_nowait(item)


class _RecordingPool(FairQueuePool):
    _queue_class = _RecordingQueue


class _Connection:
    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_the_pool_calls_the_queue_as_fairqueue_expects():
    """The pool builds its queue with (pool_size, use_lifo=...), takes with get(wait, timeout)
    and gives back with put(entry, False), which must reach put_nowait: FairQueue overrides
    get and put_nowait only."""
    _RecordingQueue.calls = []
    pool = _RecordingPool(_Connection, pool_size=1, max_overflow=0, timeout=5)
    queue = pool._pool
    assert type(queue) is _RecordingQueue, f"{STALE} the pool no longer builds _queue_class"
    assert (queue.maxsize, queue.use_lifo) == (1, False), f"{STALE} the queue's arguments moved"

    first = await greenlet_spawn(pool.connect)
    waiting = asyncio.create_task(greenlet_spawn(pool.connect))
    await settle()
    assert _RecordingQueue.calls == [("get", False, 5), ("get", True, 5)], (
        f"{STALE} the pool takes connections with {_RecordingQueue.calls}, not get(wait, timeout)"
    )
    connection = first.dbapi_connection
    first.close()
    assert _RecordingQueue.calls[2:] == [("put_nowait",)], (
        f"{STALE} a returned connection no longer reaches put_nowait: {_RecordingQueue.calls[2:]}"
    )
    second = await waiting
    assert second.dbapi_connection is connection  # handed straight to the waiter
    second.close()
    assert pool.checkedout() == 0
    pool.dispose()
