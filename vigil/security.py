"""API and integration keys: random tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    responder = "responder"
    admin = "admin"

    def allows(self, needed: Role) -> bool:
        order = [Role.viewer, Role.responder, Role.admin]
        return order.index(self) >= order.index(needed)


def new_key(kind: str) -> str:
    """`vgl_<kind>_<43 url-safe chars>`: 256 bits of entropy, so a fast hash is enough to store it."""
    return f"vgl_{kind}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """Enough of the key to recognise it in a list, not enough to use it."""
    return key[:12]
