"""Signed, expiring acknowledge-link tokens for emails.

A token is `base64url(payload JSON) "." base64url(HMAC-SHA256(secret, "vigil-ack." + first part))`, no
padding. It is signed, not encrypted: whoever holds the link can read the incident number and the recipient
(their own address). The token only proves who it was sent to and until when; it is single use because the
caller records `nonce` when the acknowledgement is accepted and refuses a nonce it has seen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_CONTEXT = b"vigil-ack."  # keeps these MACs apart from request signatures made with the same secret


class InvalidToken(Exception):
    """Malformed, tampered or signed with another secret."""


class ExpiredToken(InvalidToken):
    """Well signed but past its expiry. Catch it before InvalidToken to tell the user why."""


@dataclass(frozen=True)
class AckClaim:
    number: int
    recipient: str
    expires_at: datetime
    nonce: str


def make_token(secret: bytes, *, number: int, recipient: str, expires_at: datetime, nonce: str) -> str:
    """A URL-safe token for one acknowledge link; `expires_at` must be timezone-aware."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    payload = {"n": number, "r": recipient, "e": int(expires_at.timestamp()), "k": nonce}
    head = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{head}.{_b64(_mac(secret, head))}"


def read_token(secret: bytes, token: str, *, now: datetime) -> AckClaim:
    """The claim of a genuine, unexpired token; InvalidToken / ExpiredToken otherwise."""
    head, dot, sig = token.strip().partition(".")
    if not dot or not head or not sig:
        raise InvalidToken("malformed token")
    try:
        given = _unb64(sig)
    except (binascii.Error, ValueError) as err:
        raise InvalidToken("malformed signature") from err
    if not hmac.compare_digest(given, _mac(secret, head)):
        raise InvalidToken("bad signature")
    try:
        payload = json.loads(_unb64(head))
        claim = AckClaim(
            number=_int(payload["n"]),
            recipient=str(payload["r"]),
            expires_at=datetime.fromtimestamp(_int(payload["e"]), tz=UTC),
            nonce=str(payload["k"]),
        )
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, OSError) as err:
        raise InvalidToken("malformed payload") from err
    if now >= claim.expires_at:
        raise ExpiredToken(f"expired at {claim.expires_at.isoformat()}")
    return claim


def _mac(secret: bytes, head: str) -> bytes:
    return hmac.new(secret, _CONTEXT + head.encode("ascii", "replace"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value
