"""Signed-in devices: a session per sign-in, its refresh tokens rotating on every use.

Each refresh spends the token it is given and issues the next one of the same family (the
session). A spent token presented again means two holders of one token (a copy was stolen,
or an app refreshed twice with one token): the session is revoked, both holders must sign in
again. The database referees concurrent refreshes: the token is spent by a conditional UPDATE,
which one of them wins; the other finds it spent.

Access tokens name their session (claim ``sid``) but are not checked against it on every
request: a revoked session's access token works until it expires (``token_minutes``, 15 by
default), its refresh token not at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import driver
from api.core.errors import NotAuthenticated, NotFound
from api.core.security import new_refresh_token, refresh_token_digest
from api.core.settings import AuthSettings


class RefreshRefused(NotAuthenticated):
    """A reused refresh token: the refusal records the revocation it causes."""

    keeps_changes = True


@dataclass(frozen=True)
class Issued:
    session_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    device: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


_OPEN = """
    WITH opened AS (
        INSERT INTO auth_session (user_id, device, expires_at)
        VALUES ($1, $2, now() + make_interval(days => $3))
        RETURNING id, expires_at
    ), token AS (
        INSERT INTO auth_refresh_token (token_sha256, session_id)
        SELECT $4, id FROM opened
    )
    SELECT id, expires_at FROM opened
"""


async def open_session(
    session: AsyncSession, *, user_id: uuid.UUID, role: str, device: str, auth: AuthSettings
) -> Issued:
    """A new session for this device, its first refresh token, and the sign-in's audit record."""
    token, digest = new_refresh_token()
    connection = await driver(session, begun=True)
    row = await connection.fetchrow(_OPEN, user_id, device, auth.refresh_token_days, digest)
    await audit.record(
        session,
        actor_id=user_id,
        subject_id=user_id,
        action="auth.signed_in",
        object_type="auth_session",
        object_id=row["id"],
        device=device,
    )
    return Issued(row["id"], user_id, role, token, row["expires_at"])


# Spends the token if it is the unspent one of a live session of an account that still exists.
# A concurrent refresh with the same token waits for this row, then finds it spent.
_SPEND = """
    UPDATE auth_refresh_token t SET spent_at = now()
    FROM auth_session s JOIN "user" u ON u.id = s.user_id
    WHERE t.token_sha256 = $1 AND t.spent_at IS NULL
      AND s.id = t.session_id AND s.revoked_at IS NULL AND s.expires_at > now()
      AND u.deleted_at IS NULL
    RETURNING s.id, s.user_id, u.role::text AS role
"""
_ROTATE = """
    WITH token AS (
        INSERT INTO auth_refresh_token (token_sha256, session_id) VALUES ($2, $1)
    )
    UPDATE auth_session SET last_used_at = now(),
        expires_at = now() + make_interval(days => $3)
    WHERE id = $1
    RETURNING expires_at
"""
# Why a token was not spent: unknown, spent already, or its session ended.
_WHY_NOT = """
    SELECT t.spent_at, s.id, s.user_id, s.revoked_at, s.expires_at <= now() AS expired,
           u.deleted_at IS NOT NULL AS erased
    FROM auth_refresh_token t JOIN auth_session s ON s.id = t.session_id
    JOIN "user" u ON u.id = s.user_id
    WHERE t.token_sha256 = $1
"""
_REVOKE = """
    UPDATE auth_session SET revoked_at = now(), revoked_reason = $2
    WHERE id = $1 AND revoked_at IS NULL
    RETURNING id
"""


async def refresh(session: AsyncSession, *, refresh_token: str, auth: AuthSettings) -> Issued:
    """Spend this refresh token for the next one of its session. 401 ``invalid_refresh_token``
    (unknown), ``refresh_token_expired``, ``session_revoked``, or ``refresh_token_reused`` (spent
    already: the session is revoked, and that is kept)."""
    digest = refresh_token_digest(refresh_token)
    connection = await driver(session, begun=True)
    spent = await connection.fetchrow(_SPEND, digest)
    if spent is not None:
        token, next_digest = new_refresh_token()
        expires_at = await connection.fetchval(
            _ROTATE, spent["id"], next_digest, auth.refresh_token_days
        )
        return Issued(spent["id"], spent["user_id"], spent["role"], token, expires_at)
    why = await connection.fetchrow(_WHY_NOT, digest)
    if why is None or why["erased"]:
        raise NotAuthenticated("This refresh token is not valid.", code="invalid_refresh_token")
    if why["revoked_at"] is not None:
        raise NotAuthenticated(
            "This session was ended (signed out or revoked): sign in again.",
            code="session_revoked",
        )
    if why["spent_at"] is not None:
        if await connection.fetchval(_REVOKE, why["id"], "reused") is not None:
            await audit.record(
                session,
                actor_id=None,
                subject_id=why["user_id"],
                action="auth.refresh_token_reused",
                object_type="auth_session",
                object_id=why["id"],
            )
        raise RefreshRefused(
            "This refresh token was used already: the session is ended for safety; sign in again.",
            code="refresh_token_reused",
        )
    raise NotAuthenticated(
        "This session expired unused: sign in again.", code="refresh_token_expired"
    )


async def end_session(
    session: AsyncSession, *, user_id: uuid.UUID, session_id: uuid.UUID, reason: str
) -> bool:
    """Revoke one live session of this user; False when there is none such."""
    connection = await driver(session, begun=True)
    revoked = await connection.fetchval(
        """UPDATE auth_session SET revoked_at = now(), revoked_reason = $3
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()
           RETURNING id""",
        session_id,
        user_id,
        reason,
    )
    if revoked is None:
        return False
    action = "auth.signed_out" if reason == "signed_out" else "auth.session_revoked"
    await audit.record(
        session,
        actor_id=user_id,
        subject_id=user_id,
        action=action,
        object_type="auth_session",
        object_id=session_id,
    )
    return True


async def end_other_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    keep: uuid.UUID | None,
    reason: str,
) -> int:
    """Revoke every live session of this user but ``keep``; how many."""
    connection = await driver(session, begun=True)
    return int(
        await connection.fetchval(
            """WITH revoked AS (
                   UPDATE auth_session SET revoked_at = now(), revoked_reason = $3
                   WHERE user_id = $1 AND revoked_at IS NULL
                     AND id IS DISTINCT FROM $2
                   RETURNING 1
               )
               SELECT count(*) FROM revoked""",
            user_id,
            keep,
            reason,
        )
    )


async def live_sessions(session: AsyncSession, user_id: uuid.UUID) -> list[SessionRow]:
    """The user's sessions that can still refresh, the most recently used first."""
    connection = await driver(session)
    rows = await connection.fetch(
        """SELECT id, device, created_at, last_used_at, expires_at FROM auth_session
           WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
           ORDER BY last_used_at DESC, id""",
        user_id,
    )
    return [SessionRow(**dict(row)) for row in rows]


async def require_live(session: AsyncSession, session_id: uuid.UUID | None) -> None:
    """Changes to the account's sessions or password are refused (401 ``session_revoked``) to an
    access token whose session has ended, though it has not expired yet."""
    if session_id is None:
        return
    connection = await driver(session)
    live = await connection.fetchval(
        "SELECT revoked_at IS NULL AND expires_at > now() FROM auth_session WHERE id = $1",
        session_id,
    )
    if not live:
        raise NotAuthenticated(
            "This session was ended (signed out or revoked): sign in again.",
            code="session_revoked",
        )


def not_found() -> NotFound:
    return NotFound("You have no such session.", code="session_not_found")
