"""HMAC-SHA256 request signing, both ways: Vigil -> provider/webhook and provider -> Vigil callbacks.

`X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>` with the Unix time in
`X-Vigil-Timestamp`. The timestamp is inside the MAC, so a captured request cannot be replayed later than
the tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

TIMESTAMP_HEADER = "X-Vigil-Timestamp"
SIGNATURE_HEADER = "X-Vigil-Signature"
SCHEME = "sha256="


class InvalidSignature(Exception):
    """Missing, malformed, wrong or stale signature; answer 401 and do not act on the body."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Vigil-Signature` value for this body at this Unix time."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """Both signature headers for a request."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float | datetime,
    tolerance_seconds: int = 300,
) -> None:
    """Raise InvalidSignature unless the signature matches and the timestamp is within tolerance of now."""
    if not timestamp_header or not signature_header:
        raise InvalidSignature("missing signature headers")
    if not timestamp_header.isascii() or not timestamp_header.isdigit():
        raise InvalidSignature("malformed timestamp")
    timestamp = int(timestamp_header)
    now_ts = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_ts - timestamp) > tolerance_seconds:
        raise InvalidSignature("timestamp outside the tolerance (clock skew or replay)")
    expected = sign(secret, timestamp, body)
    # compare_digest on bytes: constant time, and no TypeError on non-ASCII header junk.
    if not hmac.compare_digest(expected.encode(), signature_header.strip().encode("utf-8", "replace")):
        raise InvalidSignature("signature mismatch")
