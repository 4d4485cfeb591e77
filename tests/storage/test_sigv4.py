"""The presigned-request gate's SigV4 rules (``tests/s3server.py``) against references that are
not this suite's: the test vectors AWS publishes (``sigv4_vectors/``) and the presigned URL
example of the S3 documentation. A gate that signs differently from AWS would let the storage
tests pass grants S3 refuses, or refuse grants S3 accepts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.s3server import (
    UNSIGNED_PAYLOAD,
    canonical_request,
    signature,
    string_to_sign,
)

VECTORS = Path(__file__).parent / "sigv4_vectors"
CASES = sorted(path.name for path in VECTORS.iterdir() if (path / "request.txt").is_file())


def parse_request(
    text: str,
) -> tuple[str, str, list[tuple[str, str]], list[tuple[str, str]], bytes]:
    """(method, path, query pairs, header pairs in order, body) of a vector's request.txt."""
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, target, _version = request_line.split(" ")
    parts = urlsplit(target)
    headers = [
        (name, value) for name, _, value in (line.partition(":") for line in header_lines if line)
    ]
    return (
        method,
        parts.path,
        parse_qsl(parts.query, keep_blank_values=True),
        headers,
        body.encode(),
    )


def test_every_vector_case_is_here():
    assert CASES == [
        "get-header-key-duplicate",
        "get-header-value-order",
        "get-header-value-trim",
        "get-vanilla",
        "get-vanilla-query",
        "get-vanilla-query-order-key-case",
        "get-vanilla-query-unreserved",
        "post-vanilla",
        "post-vanilla-query",
        "post-x-www-form-urlencoded",
    ]


@pytest.mark.parametrize("case", CASES)
def test_the_gate_signs_each_aws_vector_as_aws_does(case: str):
    folder = VECTORS / case
    context = json.loads((folder / "context.json").read_text())
    method, path, query, headers, body = parse_request((folder / "request.txt").read_text())
    amz_date = context["timestamp"].replace("-", "").replace(":", "")
    scope = f"{amz_date[:8]}/{context['region']}/{context['service']}/aws4_request"
    signed = sorted({name.lower() for name, _ in headers})
    # What the signer adds to the query: everything but the signature.
    query += [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{context['credentials']['access_key_id']}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(context["expiration_in_seconds"])),
        ("X-Amz-SignedHeaders", ";".join(signed)),
    ]
    # This generic service signs the body's hash (of nothing when the body is not signed).
    payload = hashlib.sha256(body if context["sign_body"] else b"").hexdigest()
    canonical = canonical_request(method, path, query, headers, signed, payload)
    assert canonical == (folder / "query-canonical-request.txt").read_text()
    assert string_to_sign(amz_date, scope, canonical) == (
        (folder / "query-string-to-sign.txt").read_text()
    )
    secret = context["credentials"]["secret_access_key"]
    assert signature(secret, amz_date, scope, canonical) == (
        (folder / "query-signature.txt").read_text().strip()
    )


def test_the_gate_signs_the_s3_documentation_presigned_get_example():
    # Amazon S3 API Reference, "Authenticating Requests: Using Query Parameters (AWS Signature
    # Version 4)", Example: a presigned GET of test.txt, valid 24 hours.
    url = (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    )
    parts = urlsplit(url)
    canonical = canonical_request(
        "GET",
        parts.path,
        parse_qsl(parts.query),
        [("Host", "examplebucket.s3.amazonaws.com")],
        ["host"],
        UNSIGNED_PAYLOAD,
    )
    assert canonical == (
        "GET\n/test.txt\n"
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
        "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD"
    )
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    scope = "20130524/us-east-1/s3/aws4_request"
    assert signature(secret, "20130524T000000Z", scope, canonical) == (
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
