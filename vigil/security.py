"""API and integration keys: random tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path


LAST_USED_GRANULARITY = timedelta(minutes=1)  # an API key's last_used_at is written at most this often


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


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, created once with `make()` (mode 0600). The API and the worker may both start first:
    the file is written aside and hard-linked into place, so exactly one value wins."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        write_private(draft, make())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process won; its value is read below
        finally:
            draft.unlink()
    return path.read_text().strip()


def write_private(path: Path, value: str) -> None:
    """Write `value` and a newline to `path`, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
