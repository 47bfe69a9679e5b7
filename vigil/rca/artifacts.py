"""Where chart PNGs and attachments live: a small store protocol, the local filesystem by default."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from pkgutil import resolve_name
from typing import Protocol, runtime_checkable

from vigil.settings import CoreSettings, RcaSettings

# Segments of letters, digits, `.`, `_`, `-`, each starting with a letter or digit: no `..`, no absolute path,
# no backslash, so a key can never name a file outside the store's directory (nor the `~type` side files).
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,7}$")
SLUG_CHARS = re.compile(r"[^a-z0-9._-]+")


class InvalidArtifactKey(ValueError):
    """A key that could escape the store (`..`, absolute, odd characters)."""


class ArtifactNotFound(KeyError):
    """No artifact under this key."""


@dataclass(frozen=True)
class Artifact:
    data: bytes
    content_type: str


@runtime_checkable
class ArtifactStore(Protocol):
    """Bytes by key, with their content type. Keys are checked by `check_key` before any I/O."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> Artifact: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """The key if it is safe for every store, else InvalidArtifactKey."""
    if not KEY_RE.fullmatch(key):
        raise InvalidArtifactKey(f"invalid artifact key {key!r}")
    return key


def slug(name: str) -> str:
    """A key- and URL-safe form of a series name: `checkout error rate` -> `checkout-error-rate`."""
    return SLUG_CHARS.sub("-", name.lower()).strip("-._")[:80] or "series"


def chart_key(number: int, chart: str) -> str:
    return check_key(f"incidents/{number}/charts/{chart}.png")


def attachment_key(number: int, token: str) -> str:
    return check_key(f"incidents/{number}/attachments/{token}")


class LocalArtifactStore:
    """Files under `root`; the content type in a side file. Writes are atomic (temp file, then rename)."""

    TYPE_SUFFIX = "~type"  # `~` is not a key character, so a side file never collides with a key

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # KEY_RE already rules out escapes; a symlink planted inside the directory is caught here.
        if not path.is_relative_to(self.root):
            raise InvalidArtifactKey(f"artifact key {key!r} leaves the store")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path.with_name(path.name + self.TYPE_SUFFIX), content_type.encode())
        self._write(path, data)

    def get(self, key: str) -> Artifact:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(key) from None
        side = path.with_name(path.name + self.TYPE_SUFFIX)
        content_type = side.read_text() if side.exists() else "application/octet-stream"
        return Artifact(data, content_type)

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + self.TYPE_SUFFIX).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def build_artifact_store(rca: RcaSettings, core: CoreSettings) -> ArtifactStore:
    """`local`, or the `module:factory` named by VIGIL_RCA_ARTIFACT_STORE, called with the RCA settings."""
    if rca.artifact_store == "local":
        return LocalArtifactStore(rca.artifacts_path(core))
    factory = resolve_name(rca.artifact_store)
    store = factory(rca)
    if not isinstance(store, ArtifactStore):
        raise TypeError(f"{rca.artifact_store} returned {type(store).__name__}, which lacks put/get/delete")
    return store
