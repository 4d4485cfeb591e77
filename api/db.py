"""Engine, sessions and the declarative base."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from api.settings import DatabaseSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.url,
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
