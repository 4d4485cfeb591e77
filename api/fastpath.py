"""The two busiest routes answered below FastAPI's router: GET /v1/tasks/nearby and
POST /v1/assignments.

Resolving their dependency trees (token, session, user, access rule, settings, parameters, rate
limit) cost more application time than their queries (bench/README.md). Here a request of the
common kind (well formed, signed in, allowed) is answered with the routes' own parts and no
tree: the token check of ``api.core.security``, the access rule and the rate limit each route
declares (read from the route itself), the parameter and body validation FastAPI would run, the
statements of ``api.work.tasks`` and ``api.work.assignments``, on one connection of the engine's
pool.

Anything else is handed to FastAPI unchanged: a missing or invalid token, a refused role or a
suspended account, parameters or a body to reject, another content type. Nothing is counted or
written before the last of those checks, so a request handed on is counted once, by the route;
after them, errors are rendered by the app's own exception handlers. Both ways give the same
status, headers and bytes (tests/api/work/test_fastpath.py). The FastAPI routes stay: they define
the OpenAPI schema and answer what is handed on; ``TERRAIN_FASTPATH=false`` leaves them all.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import annotated_types
import asyncpg
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from pydantic.types import AllowInfNan
from sqlalchemy.util import greenlet_spawn
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core import deps, rate_limits
from api.core.body_limit import replaying
from api.core.errors import DomainError
from api.core.observability import count_reservations_now
from api.core.security import read_token
from api.core.settings import Settings
from api.work import assignments, tasks

log = logging.getLogger("terrain")


@dataclass(frozen=True)
class _Taken:
    """A route answered here, with what it declares: its access rule and its rate limit."""

    route: APIRoute
    rule: deps.AccessRule
    bucket: rate_limits.Bucket | None
    query_fields: list[Any]  # the query parameters, validated as FastAPI validates them
    plain_query: _PlainQuery | None  # the same, for a query string of the plainest kind
    # The answer to a request of the common kind, from its scope and body (None when the
    # route takes none); raises _HandOn for FastAPI to answer, or the error the route would.
    answer: Callable[[FastPath, _Taken, Scope, bytes | None], Awaitable[Response]]
    reads_body: bool


class _HandOn(Exception):
    """The request is not of the common kind: FastAPI answers it."""


class FastPath:
    """ASGI middleware in front of the router (inside the body-size limit, so what reaches it
    is within bounds)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.taken: dict[tuple[str, str], _Taken] = {}
        answers = {
            ("GET", "/v1/tasks/nearby"): (_nearby, {tasks.nearby_query}, False),
            ("POST", "/v1/assignments"): (_assignment, set(), True),
        }
        served = list(_served_routes(api.routes))
        for (method, path), (answer, own, reads_body) in answers.items():
            # The route the router would pick for this method and path: the first that matches.
            first = next(
                (r for r in served if method in r.methods and r.path_regex.match(path)), None
            )
            if first is None or first.path != path or first.dependant is None:
                log.warning("FastAPI answers %s %s: no route of its own", method, path)
                continue
            taken = _take(first.route, first.dependant, answer, own, reads_body)
            if taken is not None:
                self.taken[method, path] = taken

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            taken = self.taken.get((scope["method"], scope["path"]))
            if taken is not None:
                # What the router would set: middleware outside labels by it, whatever the
                # outcome (a request handed on gets the same from the router).
                scope["route"] = taken.route
                scope["endpoint"] = taken.route.endpoint
                scope["path_params"] = {}
                await self._answer(taken, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, taken: _Taken, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if taken.reads_body:
            body, receive = await _read_body(receive)  # replayed to FastAPI if handed on
        try:
            response = await taken.answer(self, taken, scope, body)
        except _HandOn:
            await self.hand_on(scope, receive, send)
            return
        except Exception as exc:
            await self.answer_error(exc, scope, receive, send)
            return
        await response(scope, receive, send)

    @property
    def settings(self) -> Settings:
        # Read on every request: tests and operators may change the work settings at run time.
        return self.api.state.settings

    async def hand_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def answer_error(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """What the app's exception handlers make of ``exc``, as if the route had raised it."""
        handler = None
        for cls in type(exc).__mro__:
            # FastAPI gives a handler of Exception (or 500) to the outermost middleware, which
            # also sees what is raised here: only the others stand between route and client.
            if cls is not Exception and cls in self.api.exception_handlers:
                handler = self.api.exception_handlers[cls]
                break
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if isinstance(response, Awaitable):
            response = await response
        await response(scope, receive, send)


def _take(
    route: APIRoute, dependant: Dependant, answer: Any, own: set[Any], reads_body: bool
) -> _Taken | None:
    """The route's access rule and rate limit, if its dependencies are all ones this module
    reproduces; else None, and FastAPI keeps answering it (a dependency added to the route
    would otherwise be skipped here)."""
    rules, buckets, unknown = [], [], []
    for call in _dependency_calls(dependant):
        if hasattr(call, "allowed_roles"):
            rules.append(call)
        elif hasattr(call, "bucket"):
            buckets.append(call.bucket)
        elif not (
            call in own
            or call in (deps.get_settings, deps.get_session, deps._signed_in_user)
            or isinstance(call, OAuth2PasswordBearer)
        ):
            unknown.append(call)
    if unknown or len(set(rules)) != 1 or len(set(buckets)) > 1:
        log.warning("FastAPI answers %s: dependencies %r", route.path, unknown)
        return None
    query_fields = [f for d in _dependants(dependant) for f in d.query_params]
    bucket = buckets[0] if buckets else None
    plain = _PlainQuery.of(query_fields)
    return _Taken(route, rules[0], bucket, query_fields, plain, answer, reads_body)


class _Served(NamedTuple):
    route: APIRoute
    path: str
    path_regex: re.Pattern[str]
    methods: set[str]
    dependant: Dependant | None


def _served_routes(routes: list[BaseRoute]) -> Iterator[_Served]:
    """The app's routes in the order the router tries them, each with the dependencies it runs
    (an included router's own ones too). FastAPI keeps an included router whole and serves
    its routes through "effective" copies; a route added to the app itself is served as is."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for c in contexts():
                if isinstance(c.original_route, APIRoute):
                    yield _Served(c.original_route, c.path, c.path_regex, c.methods, c.dependant)
        elif isinstance(route, APIRoute):
            methods = route.methods or set()
            yield _Served(route, route.path, route.path_regex, methods, route.dependant)


# Numbers as people and apps write them: no sign but a minus, no leading zero, no exponent, no
# space, nothing to percent-decode. Python and pydantic read such a text to the same value.
_PLAIN_NUMBER = {
    float: re.compile(rb"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,17})?"),
    int: re.compile(rb"-?(?:0|[1-9][0-9]{0,14})"),
}


@dataclass(frozen=True)
class _PlainParameter:
    kind: type[float] | type[int]
    required: bool
    default: Any
    low: Any  # inclusive bounds, from the field's Ge and Le (None: unbounded)
    high: Any


@dataclass(frozen=True)
class _PlainQuery:
    """Reads a query string of the plainest kind (each parameter of the route once, each value
    a plain number within the field's bounds, as ``_PLAIN_NUMBER`` says) to the values FastAPI's
    validation would give, at a fraction of its cost. Anything else (an unknown or repeated
    name, an encoded character, a value to refuse) is None: FastAPI's validation reads it."""

    parameters: dict[bytes, _PlainParameter]

    @classmethod
    def of(cls, fields: list[Any]) -> _PlainQuery | None:
        """None unless every field is a number, optional or not, with no constraint but
        bounds (and no infinities or NaN, which a plain number never is)."""
        parameters = {}
        for field in fields:
            info = field.field_info
            kinds = [k for k in (float, int) if info.annotation in (k, k | None)]
            if not kinds or not field.alias.isidentifier() or not field.alias.isascii():
                return None
            low = high = None
            for constraint in info.metadata:
                if isinstance(constraint, annotated_types.Ge):
                    low = constraint.ge
                elif isinstance(constraint, annotated_types.Le):
                    high = constraint.le
                elif not (isinstance(constraint, AllowInfNan) and not constraint.allow_inf_nan):
                    return None
            required = info.is_required()
            default = None if required else info.get_default(call_default_factory=True)
            parameters[field.alias.encode()] = _PlainParameter(
                kinds[0], required, default, low, high
            )
        return cls(parameters)

    def read(self, query_string: bytes) -> dict[str, Any] | None:
        given: dict[bytes, float | int] = {}
        for pair in query_string.split(b"&") if query_string else ():
            name, equals, text = pair.partition(b"=")
            parameter = self.parameters.get(name)
            if parameter is None or not equals or name in given:
                return None
            if not _PLAIN_NUMBER[parameter.kind].fullmatch(text):
                return None
            value = parameter.kind(text.decode())
            if (parameter.low is not None and value < parameter.low) or (
                parameter.high is not None and value > parameter.high
            ):
                return None
            given[name] = value
        values = {}
        for name, parameter in self.parameters.items():
            if name in given:
                values[name.decode()] = given[name]
            elif parameter.required:
                return None
            else:
                values[name.decode()] = parameter.default
        return values


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    return (d.call for d in _dependants(dependant) if d is not dependant)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, as Starlette's ``Request.headers.get`` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _token_user(scope: Scope, settings: Settings) -> uuid.UUID:
    """The user a valid bearer token names, read as the route's OAuth2PasswordBearer reads it."""
    scheme, token = get_authorization_scheme_param(_header(scope, b"authorization"))
    user_id = read_token(token, settings.auth) if scheme.lower() == "bearer" and token else None
    if user_id is None:
        raise _HandOn
    return user_id


def _check_access(taken: _Taken, row: Any, prefix: str = "") -> None:
    """The route's sign-in and access rule on the user's row; a refusal is FastAPI's to answer
    (it reads the user again, finds the same, and says why)."""
    role = row[f"{prefix}role"] if row is not None else None
    if (
        role is None
        or not deps.signed_in(row[f"{prefix}deleted_at"])
        or deps.refusal(taken.rule, role, row[f"{prefix}suspended_at"]) is not None
    ):
        raise _HandOn


async def _pooled(fast: FastPath) -> Any:
    """A connection of the engine's pool (its checkout checks run), as the session would take."""
    return await fast.api.state.engine.raw_connection()


async def _nearby(fast: FastPath, taken: _Taken, scope: Scope, body: bytes | None) -> Response:
    settings = fast.settings
    values = taken.plain_query.read(scope["query_string"]) if taken.plain_query else None
    if values is None:
        values, errors = request_params_to_args(
            taken.query_fields, QueryParams(scope["query_string"])
        )
        if errors:
            raise _HandOn
    try:
        query = await tasks.nearby_query(settings, **values)
    except DomainError:
        raise _HandOn from None
    user_id = _token_user(scope, settings)
    pooled = await _pooled(fast)
    try:
        # The user is read in the same statement as the tasks (one round trip, not two).
        payload, row = await tasks.nearby_answer(
            pooled.driver_connection, query, settings.work, user_id=user_id
        )
    finally:
        await greenlet_spawn(pooled.close)
    _check_access(taken, row, prefix="user_")
    return Response(payload, media_type="application/json")


async def _assignment(fast: FastPath, taken: _Taken, scope: Scope, body: bytes | None) -> Response:
    settings = fast.settings
    # FastAPI reads a JSON body when the content type says so; anything else is its call. So is
    # a request with an Idempotency-Key (api.core.idempotency keeps its answer).
    if body is None or _header(scope, b"content-type") != "application/json":
        raise _HandOn
    if _header(scope, b"idempotency-key") is not None:
        raise _HandOn
    try:
        data = assignments.AssignmentIn.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeError are ValueErrors
        raise _HandOn from None
    user_id = _token_user(scope, settings)
    pooled = await _pooled(fast)
    try:
        conn: asyncpg.Connection = pooled.driver_connection
        _check_access(taken, await deps.user_row(conn, user_id))
        # From here on the request is this module's to answer: it is counted.
        if taken.bucket is not None:
            await rate_limits.count_request(conn, user_id, taken.bucket, settings.work)
        payload = await assignments.assign(conn, worker_id=user_id, body=data, settings=settings)
    finally:
        await greenlet_spawn(pooled.close)
    count_reservations_now(Request(scope), "created")  # assign committed its transaction
    return Response(payload, status_code=201, media_type="application/json")


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None if the client left first), and a ``receive`` that replays what was
    received, for FastAPI if the request is handed on."""
    chunks: list[bytes] = []
    ended: Message | None = None
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            ended = message
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    whole = ended or {"type": "http.request", "body": body, "more_body": False}
    return (None if ended else body), replaying(receive, whole)
