"""The two busiest routes answered below FastAPI's router: GET /v1/tasks/nearby and
POST /v1/assignments.

Resolving their dependency trees (token, session, user, access rule, settings, parameters, rate
limit) cost more application time than their queries (bench/README.md). Here a request of the
common kind (well formed, signed in, allowed) is answered with the routes' own parts and no
tree: the token check of ``api.security``, the access rule and the rate limit each route
declares (read from the route itself), the parameter and body validation FastAPI would run, the
statements of ``api.tasks`` and ``api.assignments``, on one connection of the engine's pool.

Anything else is handed to FastAPI unchanged: a missing or invalid token, a refused role or a
suspended account, parameters or a body to reject, another content type. Nothing is counted or
written before the last of those checks, so a request handed on is counted once, by the route;
after them, errors are rendered by the app's own exception handlers. Both ways give the same
status, headers and bytes (tests/api/test_fastpath.py). The FastAPI routes stay: they define
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

import asyncpg
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from sqlalchemy.util import greenlet_spawn
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import assignments, deps, rate_limits, tasks
from api.errors import DomainError
from api.limits import replaying
from api.observability import count_reservations_now
from api.security import read_token
from api.settings import Settings

log = logging.getLogger("terrain")


@dataclass(frozen=True)
class _Taken:
    """A route answered here, with what it declares: its access rule and its rate limit."""

    route: APIRoute
    rule: deps.AccessRule
    bucket: rate_limits.Bucket | None
    query_fields: list[Any]  # the query parameters, validated as FastAPI validates them
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
    return _Taken(route, rules[0], bucket, query_fields, answer, reads_body)


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
    values, errors = request_params_to_args(taken.query_fields, QueryParams(scope["query_string"]))
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
        ranked, first = await tasks.nearest_rows(
            pooled.driver_connection,
            lat=query.lat,
            lon=query.lon,
            radius_m=query.radius_m,
            limit=query.limit,
            listing=True,
            user_id=user_id,
        )
    finally:
        await greenlet_spawn(pooled.close)
    _check_access(taken, first, prefix="user_")
    payload = tasks.nearby_payload(ranked, query, settings.work)
    return Response(payload, media_type="application/json")


async def _assignment(fast: FastPath, taken: _Taken, scope: Scope, body: bytes | None) -> Response:
    settings = fast.settings
    # FastAPI reads a JSON body when the content type says so; anything else is its call.
    if body is None or _header(scope, b"content-type") != "application/json":
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
