"""Password hashing (argon2id) and bearer tokens (JWT, HS256, with expiry)."""

from __future__ import annotations

import time
import uuid
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


def issue_token(user_id: uuid.UUID, role: str, settings: AuthSettings) -> tuple[str, int]:
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.token_minutes)
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + lifetime}
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=_ALGORITHM)
    return token, int(lifetime.total_seconds())


def read_token(token: str, settings: AuthSettings) -> uuid.UUID | None:
    """The user id a valid, unexpired token names; None for anything else."""
    verified = _verified(token, settings.secret_key.get_secret_value())
    if verified is None:
        return None
    user_id, expires_at = verified
    return user_id if time.time() < expires_at else None


@lru_cache(maxsize=8192)
def _verified(token: str, secret: str) -> tuple[uuid.UUID, float] | None:
    # A phone sends the same token with every request for an hour: checking its signature once
    # is enough (the expiry is checked on every call, above).
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
        return uuid.UUID(claims["sub"]), float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
