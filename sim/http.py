"""The public API as the simulated apps call it: JSON over HTTP with bearer tokens, retrying what
the contract says may be retried (429 and 503, after their ``Retry-After``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

RETRIED_STATUSES = (429, 503)
MAX_RETRIES = 5
MAX_RETRY_WAIT_S = 10.0


class ApiError(Exception):
    """An answer the simulated app did not expect: the status and the error envelope."""

    def __init__(self, method: str, path: str, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = response.text[:300]
        self.code = body.get("code") if isinstance(body, dict) else None
        self.body = body
        super().__init__(f"{method} {path} answered {self.status}: {body}")


class Api:
    """One HTTP client shared by every simulated app (connection pooling), with a base URL."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        expect: tuple[int, ...] = (200, 201),
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(MAX_RETRIES + 1):
            response = await self.client.request(method, path, headers=headers, **kwargs)
            if response.status_code not in RETRIED_STATUSES or attempt == MAX_RETRIES:
                break
            await asyncio.sleep(_retry_after(response, attempt))
        if response.status_code not in expect:
            raise ApiError(method, path, response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.call(method, path, **kwargs)).json()

    async def sign_in(self, email: str, password: str) -> str:
        answer = await self.json(
            "POST", "/v1/auth/token", data={"username": email, "password": password}
        )
        return str(answer["access_token"])

    async def upload(self, grant: dict[str, Any], data: bytes, content_type: str) -> None:
        """Send the bytes as the grant says: a PUT with its headers (the local store's URL, or
        an S3 presigned PUT), or a presigned POST form with its fields."""
        if grant["method"] == "PUT":
            await self.call("PUT", grant["url"], headers=grant["headers"], content=data)
        else:
            await self.call(
                "POST",
                grant["url"],
                headers=grant["headers"],
                data=grant["fields"],
                files={"file": ("photo.jpg", data, content_type)},
                expect=(200, 201, 204),
            )


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        wait = 0.5 * 2**attempt
    return min(max(wait, 0.1), MAX_RETRY_WAIT_S)
