"""Everything handlers get injected: settings, the request's session, the signed-in user.

Every route declares its access rule with exactly one of ``Public`` or the ``Current*`` aliases;
a test walks the app's routes and fails on any route without one (deny by default).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, cast

import asyncpg
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.errors import DomainError, Forbidden, NotAuthenticated
from api.core.models import Role, User
from api.core.security import read_token
from api.core.settings import Settings
from storage import ObjectStore


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
READ_METHODS = frozenset({"GET", "HEAD"})


async def get_object_store(request: Request) -> ObjectStore:
    return request.app.state.object_store


StorageDep = Annotated[ObjectStore, Depends(get_object_store)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The only place that commits: one request, one transaction, rolled back on any error.
    # Reads (GET) run without BEGIN/COMMIT: each statement sees its own consistent snapshot,
    # and two round trips per request are saved on the busiest routes.
    async with request.app.state.sessionmaker() as session:
        if request.method in READ_METHODS:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        try:
            yield session
            await session.commit()
        except DomainError as exc:
            await (session.commit() if exc.keeps_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit happens before the response is sent, so a 2xx means committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)
BearerToken = Annotated[str | None, Depends(_bearer)]


async def _signed_in_user(session: SessionDep, settings: SettingsDep, token: BearerToken) -> User:
    user = await load_user(session, token_user_id(token, settings))
    if user is None or not signed_in(user.deleted_at):
        raise invalid_token()
    return user


def token_user_id(token: str | None, settings: Settings) -> uuid.UUID:
    """The user a bearer token names, whose row is still to be read: refused (401) without a
    token, or with one that is forged or expired."""
    if not token:
        raise NotAuthenticated("This route needs a bearer token (POST /v1/auth/token).")
    user_id = read_token(token, settings.auth)
    if user_id is None:
        raise invalid_token()
    return user_id


def invalid_token() -> NotAuthenticated:
    return NotAuthenticated("The bearer token is invalid or expired.", code="invalid_token")


def signed_in(deleted_at: datetime | None) -> bool:
    """A valid token signs in an account that still exists (an erased one keeps its row)."""
    return deleted_at is None


_USER_COLUMNS = [column.name for column in User.__table__.columns]
_USER_SQL = (
    f"""SELECT {", ".join(f'"{name}"' for name in _USER_COLUMNS)} FROM "user" WHERE id = $1"""
)


async def driver(session: AsyncSession, *, begun: bool = False) -> asyncpg.Connection:
    """The session's asyncpg connection: the busiest queries skip the ORM's execution layer,
    which would double their client-side cost. The session begins its transaction lazily, with
    its first statement: until then, what is sent on this connection runs outside it, each
    statement committing by itself. ``begun``: the transaction is begun now if it was not, so
    that what is sent commits or rolls back with the session."""
    orm = await session.connection()
    connection = await orm.get_raw_connection()
    # SQLAlchemy's asyncpg adapter says whether it sent BEGIN (when it cannot say, one more
    # statement costs a round trip). The statement goes through SQLAlchemy, which sends BEGIN
    # before it, and maps a lost connection to its errors (a 503) and out of the pool.
    if begun and not getattr(connection.dbapi_connection, "_started", False):
        await orm.exec_driver_sql("SELECT 1")
    return cast(asyncpg.Connection, connection.driver_connection)


async def load_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The signed-in user, read on every request so a suspension takes effect at once.

    A plain query on the request's connection: the ORM identity load costs more than the
    busiest route's own query. The object is not attached to the session; handlers read it.
    """
    row = await user_row(await driver(session), user_id)
    if row is None:
        return None
    values = dict(row)
    values["role"] = Role(values["role"])
    return User(**values)


async def user_row(connection: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The user's row as the access rules read it, on any connection (no session needed)."""
    return await connection.fetchrow(_USER_SQL, user_id)


async def lock_worker_row(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise one user's concurrent requests that count before they act (caps, limits)."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())


AccessRule = Callable[..., Coroutine[Any, Any, User]]


def allow(*roles: Role, even_suspended: bool = False) -> AccessRule:
    """Only these roles. A suspended account is refused too, except on the routes that let it
    see why, contest it, and keep what it earned (``even_suspended``)."""
    allowed = frozenset(roles)

    async def access_rule(user: Annotated[User, Depends(_signed_in_user)]) -> User:
        refused = refusal(access_rule, user.role, user.suspended_at)
        if refused is not None:
            raise refused
        return user

    access_rule.allowed_roles = allowed  # type: ignore[attr-defined]
    access_rule.even_suspended = even_suspended  # type: ignore[attr-defined]
    return access_rule


def refusal(rule: AccessRule, role: Role | str, suspended_at: datetime | None) -> Forbidden | None:
    """Why a signed-in account may not pass this access rule, or None when it may."""
    allowed: frozenset[Role] = rule.allowed_roles  # type: ignore[attr-defined]
    if role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        return Forbidden(f"This route is for: {names}.", code="role_not_allowed")
    if not rule.even_suspended:  # type: ignore[attr-defined]
        return suspension(suspended_at)
    return None


def suspension(suspended_at: datetime | None) -> Forbidden | None:
    """The one refusal a suspended account meets, at the door of a route or when it takes work
    (a suspension committed while the request ran is seen there)."""
    if suspended_at is None:
        return None
    return Forbidden(
        "This account is suspended: GET /v1/me says why and how to appeal.",
        code="account_suspended",
    )


async def public() -> None:
    """Access rule of the few routes open to anyone (registration, sign-in, health)."""


public.allowed_roles = None  # type: ignore[attr-defined]

Public = Depends(public)
CurrentUser = Annotated[User, Depends(allow(*Role))]
CurrentWorker = Annotated[User, Depends(allow(Role.worker))]
CurrentClient = Annotated[User, Depends(allow(Role.client))]
CurrentReviewer = Annotated[User, Depends(allow(Role.reviewer, Role.admin))]
CurrentAdmin = Annotated[User, Depends(allow(Role.admin))]
UserEvenSuspended = Annotated[User, Depends(allow(*Role, even_suspended=True))]
WorkerEvenSuspended = Annotated[User, Depends(allow(Role.worker, even_suspended=True))]
