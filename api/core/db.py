"""Engine, sessions and the declarative base."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from sqlalchemy import MetaData, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from api.core.settings import DatabaseSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FairQueue(AsyncAdaptedQueue[Any]):
    """The pool's idle connections, handed out first come, first served.

    SQLAlchemy's queue wakes the longest waiter when a connection comes back, but gives the
    connection to whoever asks before that waiter runs, and the waiter goes back to the end of
    the line: under load a few requests wait many turns, and they make the latency's tail
    (bench/README.md). Here a connection that comes back goes straight to the longest waiter,
    and nobody takes an idle connection while others wait.

    The class it extends and the pool's ``_queue_class`` are SQLAlchemy's private API:
    pyproject.toml pins SQLAlchemy's minor version, and tests/api/core/test_pool.py says what
    changed if an upgrade moves what this relies on."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # cancelled when its wait timed out or its task was
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not any(not waiter.done() for waiter in self._waiters):
            with contextlib.suppress(Empty):
                return self.get_nowait()
        if not block:
            raise Empty()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        expired = False

        def expire() -> None:
            nonlocal expired
            if not waiter.done():
                expired = True
                waiter.cancel()

        timer = loop.call_later(timeout, expire) if timeout is not None else None
        try:
            return self.await_(waiter)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Handed over as this task was cancelled: on to the next in line.
                self.put_nowait(waiter.result())
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if expired:
                raise Empty() from None
            raise
        finally:
            if timer is not None:
                timer.cancel()


class FairQueuePool(AsyncAdaptedQueuePool):
    _queue_class = FairQueue


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.url,
        poolclass=FairQueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        # No ping before every checkout (three round trips with asyncpg): a connection broken
        # by a database restart fails at most the request using it, with 503, and
        # `_discard_closed` replaces the pooled connections the server closed meanwhile.
        pool_pre_ping=settings.pool_pre_ping,
        pool_recycle=settings.pool_recycle_s,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.statement_timeout_ms),
                "lock_timeout": str(settings.lock_timeout_ms),
                "timezone": "UTC",
                "application_name": settings.application_name,
            }
        },
    )
    event.listen(engine.sync_engine.pool, "checkout", _discard_closed)
    return engine


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Replace a pooled connection the server has closed (a restart, a terminated backend).

    asyncpg notices the close without a round trip. The hot paths query the asyncpg connection
    directly, so SQLAlchemy never sees their failures: without this, a dead connection would go
    back to the pool after failing a request and fail the next one that gets it, for good."""
    if record.driver_connection.is_closed():
        raise exc.DisconnectionError("The database closed this connection.")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
