"""Password hashing (argon2id), bearer tokens (JWT, HS256, with expiry) and refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.core.settings import AuthSettings

_hasher = PasswordHasher()
_ALGORITHM = "HS256"
# A hash to verify against when the e-mail is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("terrain-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def issue_token(
    user_id: uuid.UUID,
    role: str,
    settings: AuthSettings,
    session_id: uuid.UUID | None = None,
) -> tuple[str, int]:
    """An access token for ``token_minutes``; ``session_id`` (claim ``sid``) names the signed-in
    device it was issued to (api.accounts.sessions). A token without one (issued by the
    administration tools) belongs to no session and ends only with its expiry."""
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.token_minutes)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": role,
        "iat": now,
        "exp": now + lifetime,
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=_ALGORITHM)
    return token, int(lifetime.total_seconds())


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    expires_at: float


def read_token(token: str, settings: AuthSettings) -> uuid.UUID | None:
    """The user id a valid, unexpired token names; None for anything else."""
    claims = read_claims(token, settings)
    return claims.user_id if claims else None


def read_claims(token: str, settings: AuthSettings) -> AccessClaims | None:
    """What a valid, unexpired token says; None for anything else."""
    claims = _verified(token, settings.secret_key.get_secret_value())
    return claims if claims is not None and time.time() < claims.expires_at else None


@lru_cache(maxsize=8192)
def _verified(token: str, secret: str) -> AccessClaims | None:
    # A phone sends the same token with every request until it expires: checking its signature
    # once is enough (the expiry is checked on every call, above).
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
        session_id = claims.get("sid")
        return AccessClaims(
            uuid.UUID(claims["sub"]),
            None if session_id is None else uuid.UUID(session_id),
            float(claims["exp"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None


def new_refresh_token() -> tuple[str, str]:
    """An opaque refresh token and its SHA-256 (hex), which is all that is stored."""
    token = secrets.token_urlsafe(32)
    return token, refresh_token_digest(token)


def refresh_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
