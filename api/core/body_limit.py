"""A request-body size limit as plain ASGI middleware (nothing reaches a handler past it)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope["method"] == "PUT" and scope["path"].startswith(self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        declared = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = value
        if declared is None and chunked is None and scope.get("http_version") in ("1.0", "1.1"):
            # No length and no chunks: in HTTP/1 there is no body (RFC 9112, 6.3); HTTP/2 may
            # still stream one, which is read below.
            await self.app(scope, receive, send)
            return
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number.", "bad_request")
                return
            if too_large:
                await _reply(send, 413, self._message(), "payload_too_large")
                return
        # Without a declared length (chunked), read up to the limit before the app sees a byte.
        chunks: list[bytes] = []
        size = 0
        more = declared is None
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, self._message(), "payload_too_large")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        if declared is None:
            whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            await self.app(scope, replaying(receive, whole), send)
            return
        await self.app(scope, receive, send)

    def _message(self) -> str:
        return f"Request body exceeds {self.max_bytes} bytes."


async def _reply(send: Send, status: int, detail: str, code: str) -> None:
    payload = json.dumps({"detail": detail, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def replaying(receive: Receive, message: Message) -> Receive:
    """A ``receive`` that gives ``message`` (a body already read) first, then what ``receive``
    gives (the client leaving, say)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return message

    return replay
