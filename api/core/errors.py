"""Domain errors and the single place where they become HTTP responses.

Services raise these without knowing about HTTP; ``install_error_handlers`` maps each class to a
status code and renders every error, including FastAPI's own, as ``{"detail", "code", ...}``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from storage.errors import StorageUnavailable


class DomainError(Exception):
    code = "error"
    # A refusal that records what happened (an upload refused and deleted) keeps the
    # transaction's changes; every other error rolls back.
    keeps_changes = False

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class NotAuthenticated(DomainError):
    code = "not_authenticated"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Invalid(DomainError):
    code = "invalid"


def unknown_cursor() -> Invalid:
    """A page's cursor that names nothing of the caller's in that list."""
    return Invalid("The cursor names nothing of yours in this list.", code="unknown_cursor")


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class TooManyRequests(DomainError):
    code = "rate_limited"

    def __init__(
        self, detail: str, *, retry_after_s: int, code: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail, code=code, retry_after_s=retry_after_s, **extra)
        self.retry_after_s = retry_after_s


HTTP_STATUS: dict[type[DomainError], int] = {
    NotAuthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Invalid: 422,
    TooManyRequests: 429,
}

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_body(detail: Any, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, **extra}


def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next(s for cls, s in HTTP_STATUS.items() if isinstance(exc, cls))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(
        jsonable_encoder(error_body(exc.detail, exc.code, **exc.extra)),
        status_code=status,
        headers=headers,
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return JSONResponse(jsonable_encoder(error_body(problems, "invalid_request")), status_code=422)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, "error")
    headers = exc.headers
    allowed = _allowed_methods(request) if exc.status_code == 405 else None
    if allowed:
        # Starlette names the methods of the first route matching the path only; `Allow` lists
        # every method the path takes (RFC 9110): GET and DELETE /v1/me are two routes.
        headers = {**(headers or {}), "Allow": allowed}
    return JSONResponse(error_body(exc.detail, code), status_code=exc.status_code, headers=headers)


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _allowed_methods(request: Request) -> str | None:
    """The methods the API documents for this path, or None for an undocumented path."""
    path = request.scope["path"]
    methods = {
        method.upper()
        for template, operations in request.app.openapi().get("paths", {}).items()
        if _path_pattern(template).match(path)
        for method in operations
        if method in _METHODS
    }
    return ", ".join(sorted(methods)) or None


@functools.cache
def _path_pattern(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageUnavailable)
    return JSONResponse(
        error_body("Photo storage is unavailable; retry shortly.", "storage_unavailable"),
        status_code=503,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        error_body(
            "The database is unavailable or overloaded; nothing was changed, retry shortly.",
            "database_unavailable",
        ),
        status_code=503,
        headers={"Retry-After": "2"},
    )


# Failures to reach the database, or to get a connection from it in time: nothing was changed,
# so the client may retry.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # The server closed the connection: it restarts (57P01, 57P02) or the link broke (08xxx).
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.PostgresConnectionError,
    ConnectionError,
)

# What PostgreSQL reports when a statement failed through no fault of the request: the
# transaction was rolled back, and the same request may pass a moment later. Keyed by SQLSTATE,
# or by its first two characters for a whole class.
RETRYABLE_SQLSTATES: dict[str, str] = {
    "08": "connection exception",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "53": "insufficient resources (too many connections, out of memory, disk full)",
    "55P03": "lock not available (lock_timeout)",
    "57014": "query canceled (statement_timeout)",
    "57P01": "admin shutdown",
    "57P02": "crash shutdown",
    "57P03": "cannot connect now",
}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, raised by asyncpg or wrapped by SQLAlchemy."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig.__cause__ or exc.orig
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def database_unavailable(exc: BaseException) -> bool:
    """The database, not the request, made it fail: unreachable, shut down, overloaded, or a
    lock or a statement that waited past its limit. Nothing was changed; a retry may pass."""
    state = sqlstate(exc)
    return connection_lost(exc) or (
        state is not None and (state in RETRYABLE_SQLSTATES or state[:2] in RETRYABLE_SQLSTATES)
    )


def connection_lost(exc: BaseException) -> bool:
    """The database went away under the request, or refused it a connection, as asyncpg reports
    it (the hot paths query the session's asyncpg connection directly) or through SQLAlchemy,
    which wraps most of asyncpg's errors in a plain DBAPIError."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig.__cause__ or exc.orig if exc.orig is not None else exc
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return True
    message = str(exc)
    # asyncpg's words for a connection it saw closed (SQLAlchemy's own test), and for one used
    # after the server's last message (57P01, sent while it was idle) but before asyncpg saw
    # the close; PostgreSQL's for a database closed to new connections (ALLOW_CONNECTIONS).
    return (
        (isinstance(exc, asyncpg.exceptions.InterfaceError) and "connection is closed" in message)
        or (type(exc) is asyncpg.exceptions.InternalClientError and "another operation" in message)
        or (
            isinstance(exc, asyncpg.exceptions.ObjectNotInPrerequisiteStateError)
            and "not currently accepting connections" in message
        )
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        return _database_unavailable(request, exc)
    raise exc  # a fault of the code: the last-resort handler answers 500


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The last resort, given every exception nothing else handled (Starlette calls it from its
    # outermost middleware, then re-raises for the server to log the traceback): whatever
    # failed, the client gets the envelope, never a bare text/plain 500.
    return JSONResponse(
        error_body("An unexpected error occurred; it has been logged.", "internal_error"),
        status_code=500,
    )


def _invalid_data(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the edge validation let through (a NUL byte in a form field,
    # say): the input is at fault, and nothing was changed.
    return JSONResponse(
        error_body("A value in the request cannot be stored as given.", "invalid_request"),
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(sqlalchemy.exc.DataError, _invalid_data)
    app.add_exception_handler(asyncpg.exceptions.DataError, _invalid_data)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    for exception in DATABASE_UNAVAILABLE:
        app.add_exception_handler(exception, _database_unavailable)
    for exception in (
        sqlalchemy.exc.DBAPIError,
        asyncpg.exceptions.PostgresError,  # raised as is on the routes that query asyncpg
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    ):
        app.add_exception_handler(exception, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
