"""Address verification and password reset by e-mail, each by a single-use token sent in a
link. Asking for a password reset always answers the same whether an account has the address
or not, so the answer tells nobody who has an account; the token, valid
``password_reset_minutes``, sets a new password and ends every session."""

from __future__ import annotations

import uuid

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import sessions
from api.core import audit
from api.core.deps import driver
from api.core.errors import Invalid
from api.core.security import hash_password, new_refresh_token, refresh_token_digest
from api.core.settings import Settings
from api.events.mail import queue_mail

PASSWORD_RESET = "password_reset"

# A new link replaces the ones sent before: only the latest works.
_ISSUE = """
    WITH account AS (
        SELECT id, email, display_name FROM "user"
        WHERE email = $1 AND deleted_at IS NULL
    ), earlier AS (
        UPDATE account_token SET used_at = now()
        WHERE user_id = (SELECT id FROM account) AND purpose = 'password_reset'
          AND used_at IS NULL
    ), issued AS (
        INSERT INTO account_token (token_sha256, user_id, purpose, expires_at)
        SELECT $2, id, 'password_reset', now() + make_interval(mins => $3) FROM account
        RETURNING user_id
    )
    SELECT account.id, account.email, account.display_name FROM account JOIN issued
        ON issued.user_id = account.id
"""


async def request_reset(session: AsyncSession, *, email: str, settings: Settings) -> None:
    """Mail a reset link to the account with this address, if there is one."""
    token, digest = new_refresh_token()
    connection = await driver(session, begun=True)
    account = await connection.fetchrow(
        _ISSUE, email.strip().lower(), digest, settings.auth.password_reset_minutes
    )
    if account is None:
        return
    minutes = settings.auth.password_reset_minutes
    await queue_mail(
        session,
        to=account["email"],
        subject="Reset your Terrain password",
        body=(
            f"Hello {account['display_name']},\n\n"
            "Someone (we hope you) asked to reset the password of your Terrain account. "
            f"This link sets a new one; it works once, within {minutes} minutes:\n\n"
            f"{settings.mail.password_reset_url}{token}\n\n"
            "If you did not ask, ignore this message: your password stays as it is.\n"
        ),
    )
    await audit.record(
        session,
        actor_id=None,
        subject_id=account["id"],
        action="user.password_reset_requested",
        object_type="user",
        object_id=account["id"],
    )


# Spent only if unspent and unexpired: of two requests with one token, one sets the password.
_SPEND = """
    UPDATE account_token t SET used_at = now()
    FROM "user" u
    WHERE t.token_sha256 = $1 AND t.purpose = 'password_reset' AND t.used_at IS NULL
      AND t.expires_at > now() AND u.id = t.user_id AND u.deleted_at IS NULL
    RETURNING t.user_id
"""
_WHY_NOT = """
    SELECT t.used_at IS NOT NULL AS used, u.deleted_at IS NOT NULL AS erased
    FROM account_token t JOIN "user" u ON u.id = t.user_id
    WHERE t.token_sha256 = $1 AND t.purpose = 'password_reset'
"""
# A new password ends the failed sign-ins in a row that an attacker's guesses left.
_SET_PASSWORD = """
    UPDATE "user" SET password_hash = $2, sign_in_failures = 0, sign_in_failed_at = NULL,
        sign_in_locked_until = NULL
    WHERE id = $1
"""


async def confirm_reset(session: AsyncSession, *, token: str, password: str) -> uuid.UUID:
    """Set the password the token's account asked for; 422 ``reset_token_used`` (this link or
    a later one was used), ``reset_token_expired``, ``invalid_reset_token``."""
    digest = refresh_token_digest(token)
    password_hash = await to_thread.run_sync(hash_password, password)
    connection = await driver(session, begun=True)
    user_id = await connection.fetchval(_SPEND, digest)
    if user_id is None:
        why = await connection.fetchrow(_WHY_NOT, digest)
        if why is None or why["erased"]:
            raise Invalid("This reset link is not valid.", code="invalid_reset_token")
        if why["used"]:
            raise Invalid(
                "This reset link was used or replaced by a later one: ask for a new one.",
                code="reset_token_used",
            )
        raise Invalid("This reset link expired: ask for a new one.", code="reset_token_expired")
    await connection.execute(_SET_PASSWORD, user_id, password_hash)
    revoked = await sessions.end_other_sessions(
        session, user_id=user_id, keep=None, reason="password_reset"
    )
    await audit.record(
        session,
        actor_id=user_id,
        subject_id=user_id,
        action="user.password_reset",
        object_type="user",
        object_id=user_id,
        sessions_revoked=revoked,
    )
    return user_id


# Address verification: a link mailed on registration (and again on request) whose use proves
# the account's owner reads the address: the address is verified once one was used. A new link
# replaces (deletes) the unused ones sent before.
_ISSUE_VERIFICATION = """
    WITH earlier AS (
        DELETE FROM account_token
        WHERE user_id = $1 AND purpose = 'email_verification' AND used_at IS NULL
    )
    INSERT INTO account_token (token_sha256, user_id, purpose, expires_at)
    VALUES ($2, $1, 'email_verification', now() + make_interval(hours => $3))
"""


async def send_verification(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    email: str,
    display_name: str,
    settings: Settings,
) -> None:
    token, digest = new_refresh_token()
    hours = settings.auth.email_verification_hours
    connection = await driver(session, begun=True)
    await connection.execute(_ISSUE_VERIFICATION, user_id, digest, hours)
    await queue_mail(
        session,
        to=email,
        subject="Confirm your Terrain e-mail address",
        body=(
            f"Hello {display_name},\n\n"
            "Please confirm that this address is yours by opening this link "
            f"(it works once, within {hours} hours):\n\n"
            f"{settings.mail.verify_email_url}{token}\n\n"
            "If you did not create a Terrain account, ignore this message.\n"
        ),
    )


async def email_verified(session: AsyncSession, user_id: uuid.UUID) -> bool:
    connection = await driver(session)
    return bool(await connection.fetchval(_VERIFIED, user_id))


_VERIFIED = """
    SELECT EXISTS (
        SELECT 1 FROM account_token WHERE user_id = $1 AND purpose = 'email_verification'
          AND used_at IS NOT NULL
    )
"""
_SPEND_VERIFICATION = """
    UPDATE account_token SET used_at = now()
    WHERE token_sha256 = $1 AND purpose = 'email_verification' AND used_at IS NULL
      AND expires_at > now()
    RETURNING user_id
"""
_WHY_NOT_VERIFIED = """
    SELECT used_at IS NOT NULL AS used FROM account_token
    WHERE token_sha256 = $1 AND purpose = 'email_verification'
"""


async def verify_email(session: AsyncSession, *, token: str) -> uuid.UUID:
    """Mark the token's address verified; 422 ``invalid_verification_token`` (unknown, or
    replaced by a later link), ``verification_token_used``, ``verification_token_expired``."""
    digest = refresh_token_digest(token)
    connection = await driver(session, begun=True)
    user_id = await connection.fetchval(_SPEND_VERIFICATION, digest)
    if user_id is None:
        why = await connection.fetchrow(_WHY_NOT_VERIFIED, digest)
        if why is None:
            raise Invalid(
                "This verification link is not valid (a later one may have replaced it).",
                code="invalid_verification_token",
            )
        if why["used"]:
            raise Invalid(
                "This address was verified with this link already.",
                code="verification_token_used",
            )
        raise Invalid(
            "This verification link expired: ask for a new one (POST /v1/me/verification-email).",
            code="verification_token_expired",
        )
    await audit.record(
        session,
        actor_id=user_id,
        subject_id=user_id,
        action="user.email_verified",
        object_type="user",
        object_id=user_id,
    )
    return user_id
