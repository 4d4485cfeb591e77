"""Accounts: registration, bearer tokens, the signed-in user."""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from anyio import to_thread
from fastapi import APIRouter, Depends, Form, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import EmailStr, Field, StringConstraints, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts import recovery, sessions
from api.core import audit, rate_limits
from api.core.deps import (
    BearerToken,
    Public,
    SessionDep,
    SettingsDep,
    UserEvenSuspended,
    driver,
)
from api.core.errors import Conflict, Invalid, NotAuthenticated, TooManyRequests
from api.core.models import Organization, Role, User
from api.core.schemas import ERROR_RESPONSES, Out, RequestBody, trimmed_min
from api.core.security import hash_password, issue_token, read_claims, verify_password
from api.core.settings import AuthSettings
from api.moderation.suspensions import SuspensionOut, latest_suspension, suspension_out

router = APIRouter(tags=["accounts"], responses=ERROR_RESPONSES)

# Kept exactly as typed (bodies trim text fields; a password's spaces are part of it), as the
# sign-in form does.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=10, max_length=200)]


class NewOrganization(RequestBody):
    name: str = Field(min_length=2, max_length=200, pattern=trimmed_min(2))
    description: str = Field("", max_length=2000)


class Registration(RequestBody):
    email: EmailStr
    password: Password
    display_name: str = Field(min_length=1, max_length=200, pattern=trimmed_min(1))
    role: Literal["worker", "client"] = "worker"
    organization: NewOrganization | None = Field(
        None, description="Clients: create this organization (you become its first member)."
    )
    organization_join_code: str | None = Field(
        None, max_length=64, description="Clients: join an existing organization with its code."
    )

    @model_validator(mode="after")
    def _organization_matches_role(self) -> Registration:
        chosen = (self.organization is not None) + (self.organization_join_code is not None)
        if self.role == "client" and chosen != 1:
            raise ValueError("a client gives exactly one of organization, organization_join_code")
        if self.role == "worker" and chosen:
            raise ValueError("workers do not belong to an organization")
        return self


class OrganizationOut(Out):
    id: uuid.UUID
    name: str
    description: str


class OwnOrganizationOut(OrganizationOut):
    join_code: str = Field(description="Give it to colleagues so they can register as clients.")


class UserOut(Out):
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    email_verified: bool = Field(
        description="The link mailed on registration was opened (POST /v1/auth/verify-email)"
    )
    organization: OwnOrganizationOut | None = None
    suspension: SuspensionOut | None = Field(
        None, description="The suspension in force or last lifted, with its reason and appeal"
    )


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid for")
    refresh_token: str = Field(
        description="Single use: POST /v1/auth/refresh gives the next pair for it. Kept secret "
        "by the app; presenting a used one ends the session."
    )
    refresh_expires_at: datetime = Field(
        description="The session ends unless refreshed before this (each refresh extends it)"
    )
    session_id: uuid.UUID = Field(description="This device's session (GET /v1/me/sessions)")


def token_out(issued: sessions.Issued, auth: AuthSettings) -> TokenOut:
    token, lifetime = issue_token(issued.user_id, issued.role, auth, issued.session_id)
    return TokenOut(
        access_token=token,
        expires_in=lifetime,
        refresh_token=issued.refresh_token,
        refresh_expires_at=issued.refresh_expires_at,
        session_id=issued.session_id,
    )


async def user_out(session: AsyncSession, user: User) -> UserOut:
    organization = (
        await session.get(Organization, user.organization_id) if user.organization_id else None
    )
    suspension = await latest_suspension(session, user.id) if user.role == Role.worker else None
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        email_verified=await recovery.email_verified(session, user.id),
        organization=OwnOrganizationOut.model_validate(organization) if organization else None,
        suspension=suspension_out(suspension) if suspension else None,
    )


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    display_name: str,
    role: Role,
    organization_id: uuid.UUID | None = None,
) -> User:
    email = email.strip().lower()
    taken = await session.scalar(select(func.count()).where(User.email == email))
    if taken:
        raise Conflict("An account with this e-mail already exists.", code="email_taken")
    password_hash = await to_thread.run_sync(hash_password, password)
    user = User(
        email=email,
        display_name=display_name,
        password_hash=password_hash,
        role=role,
        organization_id=organization_id,
    )
    session.add(user)
    # No savepoint: a constraint violation ends the request, whose transaction is rolled back.
    try:
        await session.flush()
    except IntegrityError as exc:  # two registrations racing for one e-mail
        raise Conflict("An account with this e-mail already exists.", code="email_taken") from exc
    return user


async def register(session: AsyncSession, form: Registration) -> User:
    organization_id = None
    if form.organization is not None:
        organization = Organization(
            name=form.organization.name,
            description=form.organization.description,
            join_code=secrets.token_urlsafe(16),
        )
        session.add(organization)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict(
                "An organization with this name exists; ask a colleague for its join code.",
                code="organization_exists",
            ) from exc
        organization_id = organization.id
    elif form.organization_join_code is not None:
        organization_id = await session.scalar(
            select(Organization.id).where(Organization.join_code == form.organization_join_code)
        )
        if organization_id is None:
            raise Invalid("No organization has this join code.", code="unknown_join_code")
    return await create_user(
        session,
        email=form.email,
        password=form.password,
        display_name=form.display_name,
        role=Role(form.role),
        organization_id=organization_id,
    )


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    if "\x00" in email:
        raise NotAuthenticated("Wrong e-mail or password.", code="invalid_credentials")
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    valid = await to_thread.run_sync(
        verify_password, password, user.password_hash if user else None
    )
    if user is None or not valid or user.deleted_at is not None:
        raise NotAuthenticated("Wrong e-mail or password.", code="invalid_credentials")
    # A suspended account still signs in: to read why, appeal, and reach what it earned.
    return user


# Password throttling, per account: a wrong password counts as a failed sign-in wherever it is
# given (signing in, or confirming an erasure with a stolen token), so guesses anywhere share
# one backoff. An attempt is counted before the password is checked, on the request's
# connection before its transaction begins, so the count commits whatever the outcome and
# concurrent guesses cannot overrun it (the account's row orders them); a success gives it back.


def sign_in_backoff_s(failures: int, auth: AuthSettings) -> int:
    """How long an account waits after ``failures`` failed sign-ins in a row: nothing for the
    first few, then a wait doubling from ``sign_in_backoff_s`` up to ``sign_in_backoff_cap_s``."""
    beyond = failures - auth.sign_in_free_failures
    if beyond < 0:
        return 0
    return min(auth.sign_in_backoff_cap_s, auth.sign_in_backoff_s * 2 ** min(beyond, 30))


def _backoff_schedule(auth: AuthSettings) -> list[int]:
    """The waits after 1, 2, 3... failures, up to the first at the cap (the cap after that)."""
    waits = [sign_in_backoff_s(1, auth)]
    while waits[-1] < auth.sign_in_backoff_cap_s:
        waits.append(sign_in_backoff_s(len(waits) + 1, auth))
    return waits


# One more failure for the account, unless it is waiting out an earlier one.
_COUNT_ATTEMPT = """
    UPDATE "user" SET sign_in_failures = sign_in_failures + 1,
        sign_in_failed_at = now(),
        sign_in_locked_until = now()
            + make_interval(secs => coalesce(($2::int[])[sign_in_failures + 1], $3))
    WHERE email = $1
      AND (sign_in_locked_until IS NULL OR sign_in_locked_until <= clock_timestamp())
    RETURNING id
"""
_LOCKED_FOR_S = """
    SELECT extract(epoch FROM sign_in_locked_until - clock_timestamp()) FROM "user"
    WHERE email = $1 AND sign_in_locked_until > clock_timestamp()
"""
_SIGNED_IN = """
    UPDATE "user" SET sign_in_failures = 0, sign_in_failed_at = NULL, sign_in_locked_until = NULL
    WHERE id = $1 AND sign_in_failures > 0
"""


async def count_password_attempt(
    connection: asyncpg.Connection, *, email: str, auth: AuthSettings
) -> None:
    """Count one password attempt against the account with this (normalised) e-mail, if any,
    as a failure until ``password_accepted`` says otherwise; 429 with Retry-After, the attempt
    not counted, while the account waits out its failures in a row."""
    schedule = _backoff_schedule(auth)
    counted = await connection.fetchval(_COUNT_ATTEMPT, email, schedule, schedule[-1])
    if counted is None:
        locked_for_s = await connection.fetchval(_LOCKED_FOR_S, email)
        if locked_for_s is not None:
            retry_after = max(1, math.ceil(locked_for_s))
            raise TooManyRequests(
                f"Too many failed sign-ins for this account in a row; retry in {retry_after} s.",
                code="too_many_failed_sign_ins",
                retry_after_s=retry_after,
            )


async def password_accepted(connection: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """The password was right: the account's count of failures in a row starts afresh."""
    await connection.execute(_SIGNED_IN, user_id)


async def sign_in(
    session: AsyncSession, *, email: str, password: str, address: str, auth: AuthSettings
) -> User:
    """The account these credentials open, within the limits: at most
    ``sign_in_failures_per_address_per_minute`` failures from one client address, and the
    account's backoff after failures in a row (whatever the address: short, so that nobody
    keeps the owner out for long). 429 with Retry-After past either."""
    if "\x00" in email:
        raise NotAuthenticated("Wrong e-mail or password.", code="invalid_credentials")
    email = email.strip().lower()
    connection = await driver(session)  # before the session's first statement: autocommit
    address_key = rate_limits.address_subject(address)
    window = await rate_limits.hit(
        connection,
        address_key,
        rate_limits.SIGN_IN_BUCKET,
        limit=auth.sign_in_failures_per_address_per_minute,
        what="failed sign-ins from one address",
        code="too_many_failed_sign_ins_from_address",
    )
    await count_password_attempt(connection, email=email, auth=auth)
    user = await authenticate(session, email=email, password=password)
    await password_accepted(connection, user.id)
    await rate_limits.give_back(connection, address_key, rate_limits.SIGN_IN_BUCKET, window)
    return user


async def confirm_password(
    session: AsyncSession, user: User, *, password: str, auth: AuthSettings
) -> None:
    """Check the signed-in user's own password before a grave change (erasure), throttled as a
    sign-in of that account is: a stolen token is no way around the backoff. 401
    ``invalid_credentials`` when wrong; call it before the session's first statement."""
    connection = await driver(session)
    await count_password_attempt(connection, email=user.email, auth=auth)
    if not await to_thread.run_sync(verify_password, password, user.password_hash):
        raise NotAuthenticated("Wrong password.", code="invalid_credentials")
    await password_accepted(connection, user.id)


@router.post("/v1/auth/register", status_code=201, dependencies=[Public])
async def register_route(form: Registration, session: SessionDep, settings: SettingsDep) -> UserOut:
    """Create a worker account, or a client account that creates or joins an organization.
    A link to confirm the address is mailed to it (POST /v1/auth/verify-email).

    Reviewers and admins are created by an admin with ``python -m api.cli create-user``.
    """
    user = await register(session, form)
    await recovery.send_verification(
        session,
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        settings=settings,
    )
    return await user_out(session, user)


class PasswordForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form, its schema saying what it takes: an empty field reads as
    missing, so the username and the password are at least one character; a form field has
    no null, so grant_type is "password" or left out."""

    def __init__(
        self,
        *,
        grant_type: Annotated[str, Form(pattern="^password$")] = "password",
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


def device_label(device: str | None, user_agent: str | None) -> str:
    """How a session is named in the list: as the app says, else by its User-Agent."""
    for label in (device, user_agent):
        cleaned = " ".join((label or "").replace("\x00", "").split())[:200]
        if cleaned:
            return cleaned
    return "Unnamed device"


@router.post("/v1/auth/token", dependencies=[Public])
async def token_route(
    form: Annotated[PasswordForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    device: Annotated[
        str | None, Form(max_length=200, description="Names this session; else the User-Agent")
    ] = None,
) -> TokenOut:
    """OAuth2 password flow: ``username`` is the e-mail. Signs this device in: a new session,
    with a short-lived bearer token (JWT, ``expires_in`` seconds) and a refresh token that
    POST /v1/auth/refresh exchanges for the next pair.

    Throttled: 429 `too_many_failed_sign_ins` while the account waits out failed attempts in a
    row (5 free, then 15 s doubling up to 5 minutes), 429
    `too_many_failed_sign_ins_from_address` past 20 failures a minute from one client address;
    both with Retry-After."""
    address = request.client.host if request.client else ""
    user = await sign_in(
        session,
        email=form.username,
        password=form.password,
        address=address,
        auth=settings.auth,
    )
    issued = await sessions.open_session(
        session,
        user_id=user.id,
        role=user.role.value,
        device=device_label(device, request.headers.get("user-agent")),
        auth=settings.auth,
    )
    return token_out(issued, settings.auth)


@router.get("/v1/me")
async def me_route(user: UserEvenSuspended, session: SessionDep) -> UserOut:
    return await user_out(session, user)


async def current_session_id(token: BearerToken, settings: SettingsDep) -> uuid.UUID | None:
    """The session the request's access token was issued to (None: a token of no session)."""
    claims = read_claims(token, settings.auth) if token else None
    return claims.session_id if claims else None


CurrentSessionId = Annotated[uuid.UUID | None, Depends(current_session_id)]


class RefreshIn(RequestBody):
    refresh_token: str = Field(
        min_length=1,
        max_length=200,
        pattern=trimmed_min(1),
        description="The refresh token of the latest pair",
    )


@router.post("/v1/auth/refresh", dependencies=[Public])
async def refresh_route(body: RefreshIn, session: SessionDep, settings: SettingsDep) -> TokenOut:
    """Exchange a refresh token for a new access token and refresh token; the one given is
    spent. Refresh one at a time: a refresh token presented a second time (a copy used by
    someone else, or two refreshes at once) ends its session, 401 `refresh_token_reused`, and
    the device signs in again. 401 `refresh_token_expired` for a session left unused past its
    `refresh_expires_at`, `session_revoked` for one signed out or revoked,
    `invalid_refresh_token` for anything else."""
    issued = await sessions.refresh(session, refresh_token=body.refresh_token, auth=settings.auth)
    return token_out(issued, settings.auth)


@router.post("/v1/auth/sign-out", status_code=204)
async def sign_out_route(
    user: UserEvenSuspended, session: SessionDep, session_id: CurrentSessionId
) -> None:
    """End this device's session: its refresh token stops working at once, its access token
    when it expires (within `expires_in` of its issue). Signing out twice is no error."""
    if session_id is not None:
        await sessions.end_session(
            session, user_id=user.id, session_id=session_id, reason="signed_out"
        )


class SessionOut(Out):
    id: uuid.UUID
    device: str
    created_at: datetime = Field(description="When this device signed in")
    last_used_at: datetime = Field(description="Its latest sign-in or refresh")
    expires_at: datetime = Field(description="It ends unless refreshed before this")
    current: bool = Field(description="The session of the token this request carries")


@router.get("/v1/me/sessions")
async def sessions_route(
    user: UserEvenSuspended, session: SessionDep, session_id: CurrentSessionId
) -> list[SessionOut]:
    """The devices signed in to your account, the most recently used first."""
    return [
        SessionOut(
            id=row.id,
            device=row.device,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            current=row.id == session_id,
        )
        for row in await sessions.live_sessions(session, user.id)
    ]


@router.delete("/v1/me/sessions/{session_id}", status_code=204)
async def revoke_session_route(
    session_id: uuid.UUID,
    user: UserEvenSuspended,
    session: SessionDep,
    current: CurrentSessionId,
) -> None:
    """Sign a device out (this one too, if it is its id): its refresh token stops working at
    once, its access token when it expires. 404 `session_not_found` for a session that is not
    one of yours or has ended already."""
    await sessions.require_live(session, current)
    reason = "signed_out" if session_id == current else "revoked"
    if not await sessions.end_session(
        session, user_id=user.id, session_id=session_id, reason=reason
    ):
        raise sessions.not_found()


class PasswordChange(RequestBody):
    current_password: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        description="Your password now, to confirm"
    )
    new_password: Password


_SET_PASSWORD = 'UPDATE "user" SET password_hash = $2 WHERE id = $1'


async def change_password(
    session: AsyncSession,
    user: User,
    *,
    current_password: str,
    new_password: str,
    keep: uuid.UUID | None,
    auth: AuthSettings,
) -> None:
    """Set a new password once the current one is confirmed (throttled as a sign-in), and
    revoke every session of the account but ``keep``."""
    await confirm_password(session, user, password=current_password, auth=auth)
    password_hash = await to_thread.run_sync(hash_password, new_password)
    connection = await driver(session, begun=True)
    await connection.execute(_SET_PASSWORD, user.id, password_hash)
    revoked = await sessions.end_other_sessions(
        session, user_id=user.id, keep=keep, reason="password_changed"
    )
    await audit.record(
        session,
        actor_id=user.id,
        subject_id=user.id,
        action="user.password_changed",
        object_type="user",
        object_id=user.id,
        sessions_revoked=revoked,
    )


@router.post("/v1/me/password", status_code=204)
async def change_password_route(
    body: PasswordChange,
    user: UserEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
    current: CurrentSessionId,
) -> None:
    """Change your password. Every other device is signed out (their refresh tokens stop
    working at once); this one stays signed in. A wrong current password counts as a failed
    sign-in of the account and is throttled as one: 401 `invalid_credentials`, 429
    `too_many_failed_sign_ins` with Retry-After while the account waits."""
    await sessions.require_live(session, current)
    await change_password(
        session,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        keep=current,
        auth=settings.auth,
    )


class PasswordResetRequest(RequestBody):
    email: EmailStr


@router.post("/v1/auth/password-reset", status_code=202, dependencies=[Public])
async def password_reset_route(
    body: PasswordResetRequest, session: SessionDep, settings: SettingsDep
) -> None:
    """Mail a link that sets a new password (it works once, within an hour) to the account
    with this address. The answer is 202 whether there is one or not: it tells nobody who has
    an account. A new request replaces the links sent before."""
    await recovery.request_reset(session, email=body.email, settings=settings)


class PasswordReset(RequestBody):
    token: str = Field(
        min_length=1, max_length=200, pattern=trimmed_min(1), description="From the e-mailed link"
    )
    password: Password


@router.post("/v1/auth/password-reset/confirm", status_code=204, dependencies=[Public])
async def password_reset_confirm_route(body: PasswordReset, session: SessionDep) -> None:
    """Set a new password with an e-mailed reset token. Every session of the account ends
    (their refresh tokens stop working at once); sign in again. 422 `invalid_reset_token`,
    `reset_token_used` (this link, or a later one, was used already), `reset_token_expired`."""
    await recovery.confirm_reset(session, token=body.token, password=body.password)


class EmailVerification(RequestBody):
    token: str = Field(
        min_length=1, max_length=200, pattern=trimmed_min(1), description="From the e-mailed link"
    )


@router.post("/v1/auth/verify-email", status_code=204, dependencies=[Public])
async def verify_email_route(body: EmailVerification, session: SessionDep) -> None:
    """Confirm an account's e-mail address with the token of the link mailed to it. 422
    `invalid_verification_token`, `verification_token_used`, `verification_token_expired`."""
    await recovery.verify_email(session, token=body.token)


@router.post("/v1/me/verification-email", status_code=202)
async def resend_verification_route(
    user: UserEvenSuspended, session: SessionDep, settings: SettingsDep
) -> None:
    """Mail a new link to confirm your address (the earlier ones stop working). 409
    `email_already_verified`."""
    if await recovery.email_verified(session, user.id):
        raise Conflict("Your e-mail address is verified already.", code="email_already_verified")
    await recovery.send_verification(
        session,
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        settings=settings,
    )
