"""What a race test needs to prove its requests overlapped and to choose the order they meet in.

- ``HeldRow``: a connection of the test's own holds a row lock (``SELECT ... FOR UPDATE``);
  every request that locks that row queues behind it, in the order it arrived.
- ``queued``: how many requests wait, right now, on a lock taken by a statement on a table
  (read from ``pg_stat_activity``), so a test knows each one is in flight and where.
- ``Pause``: an async function of the application wrapped so that its first call, once done,
  waits until the test lets it go: the request holds whatever it took meanwhile.

Start request A, wait until it is queued, start B, wait until both are queued, release: A then B
is forced, and both were in flight at once. Take the steps in the other order for B then A.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tests.conftest import plain_dsn


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` if it does not within ``timeout_s``
    (a bound on a hang, not a measurement: the check itself decides)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


# A backend blocked on a heavyweight lock (row, tuple, transaction or advisory), running a
# statement that reads ``table`` with a locking clause.
_QUEUED = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND wait_event_type = 'Lock' AND query ~* $1
"""


async def queued(db: asyncpg.Connection, table: str) -> int:
    """How many statements locking rows of ``table`` (``FROM <table> ... FOR UPDATE``) wait."""
    return int(await db.fetchval(_QUEUED, rf'FROM "?{table}"?\s.*FOR UPDATE'))


async def queued_on_advisory_lock(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        )
    )


async def wait_queued(db: asyncpg.Connection, table: str, count: int) -> None:
    async def reached() -> bool:
        return await queued(db, table) == count

    await until(reached, f"{count} request(s) queued on a lock of a {table} row")


class HeldRow:
    """A row of ``table`` locked by a transaction of the test's own until ``release()``."""

    def __init__(self, url: str, table: str, row_id: Any) -> None:
        self.url, self.table, self.row_id = url, table, row_id
        self.connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> HeldRow:
        self.connection = await asyncpg.connect(plain_dsn(self.url))
        await self.connection.execute("BEGIN")
        await self.connection.execute(
            f'SELECT 1 FROM "{self.table}" WHERE id = $1 FOR UPDATE', self.row_id
        )
        return self

    async def release(self) -> None:
        if self.connection is not None and not self.connection.is_closed():
            await self.connection.execute("ROLLBACK")
            await self.connection.close()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def held(app: Any, table: str, row_id: Any) -> HeldRow:
    return HeldRow(app.state.settings.db.url, table, row_id)


class Pause:
    """``function`` wrapped: its first call runs, then waits (``reached`` set) until
    ``resume()``; later calls run straight through."""

    def __init__(self, function: Callable[..., Awaitable[Any]]) -> None:
        self.function = function
        self.reached = asyncio.Event()
        self._resume = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.function(*args, **kwargs)
        if not self.reached.is_set():
            self.reached.set()
            await self._resume.wait()
        return result

    def resume(self) -> None:
        self._resume.set()


async def finish(*tasks: asyncio.Task) -> None:
    """Let tasks a failed test left behind end (their locks are gone), so nothing leaks."""
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
