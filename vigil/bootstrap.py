"""First start: create an admin API key and a default integration key, written 0600 under the data dir."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vigil.db import create_db_engine, session_factory
from vigil.models import ApiKey, Integration, User, utcnow
from vigil.security import Role, hash_key, key_prefix, new_key
from vigil.settings import CoreSettings, Settings

ADMIN_KEY_FILE = "admin-api-key"
INTEGRATION_KEY_FILE = "integration-key"


def create_user_with_key(session: Session, *, name: str, email: str, role: Role) -> str:
    """Add a user and an API key for it; returns the plaintext key (shown once)."""
    user = User(name=name, email=email, role=role.value)
    session.add(user)
    session.flush()
    key = new_key("api")
    session.add(ApiKey(user_id=user.id, name="bootstrap", prefix=key_prefix(key), key_hash=hash_key(key)))
    return key


def create_integration(
    session: Session, *, name: str, kind: str = "generic", auto_resolve: bool = True, hold_resolution_seconds: int = 0
) -> str:
    """Add an integration; returns its plaintext key (shown once)."""
    key = new_key("int")
    session.add(
        Integration(
            name=name, kind=kind, prefix=key_prefix(key), key_hash=hash_key(key), auto_resolve=auto_resolve,
            hold_resolution_seconds=hold_resolution_seconds,
        )
    )
    return key


ACK_LINK_SECRET_FILE = "ack-link-secret"


def ack_link_secret(settings: Settings) -> bytes:
    """VIGIL_ACK_LINK_SECRET, else a random key kept in the data dir (created once, 0600). The worker signs the
    links and the API checks them, so processes on different hosts must share the setting."""
    if settings.ack_links.secret is not None:
        return settings.ack_links.secret.get_secret_value().encode()
    path = settings.core.data_dir / ACK_LINK_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        _write_secret(draft, secrets.token_urlsafe(32))
        try:
            os.link(draft, path)  # atomic: the API and the worker may both start first; one key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def _key_still_valid(session: Session, path: Path, model: type[ApiKey] | type[Integration]) -> bool:
    if not path.exists():
        return False
    key = path.read_text().strip()
    query = select(model.id).where(model.key_hash == hash_key(key))
    if model is ApiKey:
        query = query.where(ApiKey.revoked_at.is_(None))
    return session.scalar(query) is not None


def bootstrap(settings: CoreSettings) -> list[str]:
    """Idempotent: (re)creates a key only when its file is missing or no longer matches the DB."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    engine = create_db_engine(settings.database_url)
    try:
        with session_factory(engine).begin() as session:
            admin_path = data_dir / ADMIN_KEY_FILE
            if not _key_still_valid(session, admin_path, ApiKey):
                admin = session.scalar(select(User).where(User.email == "admin@localhost"))
                if admin is None:
                    key = create_user_with_key(session, name="Admin", email="admin@localhost", role=Role.admin)
                else:
                    # Rotation: the old bootstrap key stops working when its file is replaced.
                    session.execute(
                        update(ApiKey)
                        .where(ApiKey.user_id == admin.id, ApiKey.name == "bootstrap", ApiKey.revoked_at.is_(None))
                        .values(revoked_at=utcnow())
                    )
                    key = new_key("api")
                    session.add(ApiKey(user_id=admin.id, name="bootstrap", prefix=key_prefix(key), key_hash=hash_key(key)))
                _write_secret(admin_path, key)
                created.append(str(admin_path))
            integ_path = data_dir / INTEGRATION_KEY_FILE
            if not _key_still_valid(session, integ_path, Integration):
                existing = session.scalar(select(Integration).where(Integration.name == "default"))
                if existing is None:
                    key = create_integration(session, name="default")
                else:
                    key = new_key("int")
                    existing.key_hash, existing.prefix = hash_key(key), key_prefix(key)
                _write_secret(integ_path, key)
                created.append(str(integ_path))
    finally:
        engine.dispose()
    return created


def main() -> int:
    settings = CoreSettings()
    for path in bootstrap(settings):
        print(f"created {path} (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
