"""An S3 HTTP endpoint for tests: moto's S3 server on loopback ports, in one process, behind a
gate of this suite's own that checks presigned requests. Not AWS, not MinIO: S3's HTTP API as
moto serves it, with the presigned-request checks S3 makes added in front.

A conftest brings it in with ``from tests.s3server import s3_server`` (a session fixture). It
serves the same in-memory buckets at two addresses:

- ``unchecked_url`` is moto as it is. moto stores what a presigned request sends without
  checking its signature, its expiry, or the checksum header against the body.
- ``url`` puts the gate in front of moto. It checks presigned (query-string SigV4) requests the
  way S3 and MinIO do: expiry (403 AccessDenied), signature over the method, path, query and
  signed headers (403 SignatureDoesNotMatch), unsigned ``x-amz-*`` headers (403 AccessDenied),
  and ``x-amz-checksum-sha256`` against the body (400 BadDigest). The upload grants rely on
  exactly these checks, so the storage tests run against this address.

The gate follows the SigV4 specification on its own rather than calling botocore's signer, so a
grant that fails to bind a header fails here. Its signing rules are the functions under
"SigV4" below, and only those: ``tests/storage/test_sigv4.py`` checks them against the test
vectors AWS publishes and the S3 documentation's presigned URL example. Its clock can be moved
forward, and it can answer the next requests to a bucket with a server error, to test expiry
and retries without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

import boto3
import pytest
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import BaseWSGIServer, make_server

from storage import S3ObjectStore

ACCESS_KEY_ID = "AKIATERRAINTEST00001"
SECRET_ACCESS_KEY = "terrain-test-secret-access-key"
REGION = "us-east-1"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PresignedRequestGate:
    """WSGI middleware: refuses presigned requests S3 would refuse, passes the rest to moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]], secrets: dict[str, str]) -> None:
        self.app = app
        self.secrets = secrets
        self.clock_offset_s = 0.0
        self._faults: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.requests_seen: dict[str, int] = {}

    def fail_next(self, bucket: str, statuses: list[int]) -> None:
        with self._lock:
            self._faults[bucket] = list(statuses)
            self.requests_seen[bucket] = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
        with self._lock:
            if bucket in self.requests_seen:
                self.requests_seen[bucket] += 1
            faults = self._faults.get(bucket)
            status = faults.pop(0) if faults else None
        if status is not None:
            return _error(start_response, status, "SlowDown", "Injected server error.")

        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        params = dict(query)
        if "X-Amz-Signature" not in params:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        refusal = self._refusal(environ, query, params, body)
        if refusal is not None:
            return _error(start_response, *refusal)
        return self.app(environ, start_response)

    def _refusal(
        self, environ: Environ, query: list[tuple[str, str]], params: dict[str, str], body: bytes
    ) -> tuple[int, str, str] | None:
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            return 400, "AuthorizationQueryParametersError", "Only AWS4-HMAC-SHA256 is accepted."
        access_key_id, _, scope = params.get("X-Amz-Credential", "").partition("/")
        secret = self.secrets.get(access_key_id)
        if secret is None:
            return 403, "InvalidAccessKeyId", "The AWS Access Key Id does not exist."
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        now = time.time() + self.clock_offset_s
        if now > signed_at.timestamp() + int(params["X-Amz-Expires"]):
            return 403, "AccessDenied", "Request has expired"
        signed_headers = params["X-Amz-SignedHeaders"].split(";")
        canonical = canonical_request(
            environ["REQUEST_METHOD"],
            environ["RAW_URI"].split("?", 1)[0],
            query,
            [(name, _header(environ, name)) for name in signed_headers],
            signed_headers,
            params.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD),
        )
        expected = signature(secret, params["X-Amz-Date"], scope, canonical)
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return 403, "SignatureDoesNotMatch", "The request signature does not match."
        unsigned = sorted(set(_amz_headers(environ)) - set(signed_headers))
        if unsigned:
            return 403, "AccessDenied", f"Headers present but not signed: {', '.join(unsigned)}"
        claimed = _header(environ, "x-amz-checksum-sha256").strip()
        if claimed:
            actual = _b64(hashlib.sha256(body).digest())
            if claimed != actual:
                message = "The SHA256 you specified did not match the calculated checksum."
                return 400, "BadDigest", message
        return None


class S3TestServer:
    def __init__(self) -> None:
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.gate = PresignedRequestGate(
            DomainDispatcherApplication(create_backend_app), {ACCESS_KEY_ID: SECRET_ACCESS_KEY}
        )
        self._gate_server: BaseWSGIServer | None = None
        self._gate_thread: threading.Thread | None = None
        self.url = ""
        self.unchecked_url = ""

    def start(self) -> None:
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.unchecked_url = f"http://{host}:{port}"
        self._gate_server = make_server(
            "127.0.0.1", 0, self.gate, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._gate_server.server_port}"
        self._gate_thread = threading.Thread(target=self._gate_server.serve_forever, daemon=True)
        self._gate_thread.start()

    def stop(self) -> None:
        if self._gate_server is not None:
            self._gate_server.shutdown()
            self._gate_server.server_close()
        if self._gate_thread is not None:
            self._gate_thread.join()
        self._moto.stop()

    def client(self, *, checked: bool = True) -> Any:
        """A plain boto3 client on this endpoint, to arrange and inspect buckets."""
        return boto3.client(
            "s3",
            endpoint_url=self.url if checked else self.unchecked_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def store(self, bucket: str, *, checked: bool = True, **options: Any) -> S3ObjectStore:
        """The S3 backend on this endpoint (``checked=False``: straight to moto)."""
        return S3ObjectStore(
            bucket=bucket,
            endpoint_url=self.url if checked else self.unchecked_url,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            **options,
        )

    @contextmanager
    def later(self, seconds: float) -> Iterator[None]:
        """The gate's clock moved ``seconds`` ahead, as if that much time had passed."""
        self.gate.clock_offset_s += seconds
        try:
            yield
        finally:
            self.gate.clock_offset_s -= seconds


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    """One endpoint for the session; import this fixture into a conftest to use it."""
    server = S3TestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- SigV4: the rules the gate signs by, in one place -----------------------------------------

ALGORITHM = "AWS4-HMAC-SHA256"
# What S3 signs in place of the body's hash in a presigned request.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Every parameter but the signature, names and values percent-encoded (all but the
    unreserved ``A-Za-z0-9-_.~``), sorted by encoded name, then value."""
    encoded = sorted((_encode(k), _encode(v)) for k, v in pairs if k != "X-Amz-Signature")
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers: Iterable[tuple[str, str]], signed: list[str]) -> str:
    """One line per signed header, in the order signed: its lowercase name, and its values in
    the order received, each trimmed with inner runs of spaces made one, joined by commas."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    signed: list[str],
    payload_hash: str,
) -> str:
    """The path as sent (S3 neither normalises nor re-encodes it)."""
    return "\n".join(
        [
            method,
            path,
            canonical_query(query),
            canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return "\n".join([ALGORITHM, amz_date, scope, digest])


def signature(secret: str, amz_date: str, scope: str, canonical: str) -> str:
    """``scope`` is ``<yyyymmdd>/<region>/<service>/aws4_request``: the key is derived through
    each of its parts in turn."""
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), "sha256").hexdigest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), "sha256").digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _header(environ: Environ, name: str) -> str:
    if name in ("content-type", "content-length"):
        value = environ.get(name.upper().replace("-", "_"), "")
    else:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
    return str(value)


def _amz_headers(environ: Environ) -> Iterator[str]:
    for name in environ:
        if name.startswith("HTTP_X_AMZ_"):
            yield name[5:].lower().replace("_", "-")


def _error(start_response: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    ).encode()
    reasons = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error"}
    start_response(
        f"{status} {reasons.get(status, 'Service Unavailable')}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]
