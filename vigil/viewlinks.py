"""Signed read-only links to an incident's page, for the email's "Incident:" line: a browser has no API key.

The ack links' signing (vigil/providers/acklinks.py) with a key derived for this purpose alone, so a view
token can never acknowledge (and an ack token never opens the page). A view link is not single use: it is
the page's address for the recipient until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from vigil.providers.acklinks import AckClaim, make_token, read_token

VIEW_TTL = timedelta(days=14)
_PURPOSE = b"vigil-incident-view"
_NONCE = "view"


def view_secret(ack_secret: bytes) -> bytes:
    """The view links' key, derived from the ack link secret (one secret to set and rotate)."""
    return hmac.new(ack_secret, _PURPOSE, hashlib.sha256).digest()


def make_view_token(ack_secret: bytes, *, number: int, recipient: str, expires_at: datetime) -> str:
    return make_token(view_secret(ack_secret), number=number, recipient=recipient, expires_at=expires_at, nonce=_NONCE)


def read_view_token(ack_secret: bytes, token: str, *, now: datetime) -> AckClaim:
    """The claim of a genuine, unexpired view token; InvalidToken / ExpiredToken otherwise."""
    return read_token(view_secret(ack_secret), token, now=now)
