"""First start: create an admin API key and a default integration key, written 0600 under the data dir."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vigil import audit
from vigil.db import create_db_engine, session_factory
from vigil.models import ApiKey, Integration, User, utcnow
from vigil.security import Role, hash_key, key_prefix, new_key, read_or_create_secret, write_private
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
    return read_or_create_secret(settings.core.data_dir / ACK_LINK_SECRET_FILE, lambda: secrets.token_urlsafe(32)).encode()


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
    # Keys, the SQLite database and the outbox live here: the owner only (the files' own modes follow the umask).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
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
                write_private(admin_path, key)
                created.append(str(admin_path))
            integ_path = data_dir / INTEGRATION_KEY_FILE
            if not _key_still_valid(session, integ_path, Integration):
                existing = session.scalar(select(Integration).where(Integration.name == "default"))
                if existing is None:
                    key = create_integration(session, name="default")
                else:
                    key = new_key("int")
                    existing.key_hash, existing.prefix = hash_key(key), key_prefix(key)
                write_private(integ_path, key)
                created.append(str(integ_path))
    finally:
        engine.dispose()
    return created


def recover_admin(settings: CoreSettings, *, email: str, name: str | None = None) -> str:
    """Make `email` an admin (creating the user if needed) with a new API key; returns the key (shown once).

    Works straight on the database, for an install where no one can authenticate as an admin any more."""
    engine = create_db_engine(settings.database_url)
    try:
        with session_factory(engine).begin() as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(name=name or email, email=email, role=Role.admin.value)
                session.add(user)
                session.flush()
            before, user.role = user.role, Role.admin.value
            key = new_key("api")
            row = ApiKey(user_id=user.id, name="recovery", prefix=key_prefix(key), key_hash=hash_key(key))
            session.add(row)
            audit.record(session, "admin.recover", actor="python -m vigil.bootstrap --recover-admin",
                         subject_user_id=user.id, key=row, detail=f"role {before} -> admin")
    finally:
        engine.dispose()
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vigil.bootstrap",
        description="Create the first admin and integration keys under the data dir (idempotent).",
    )
    parser.add_argument(
        "--recover-admin", metavar="EMAIL",
        help="instead: make the user with this email an admin (created if missing) and print a new API key for it",
    )
    parser.add_argument("--name", help="with --recover-admin: the name of a user that has to be created")
    args = parser.parse_args(argv)
    settings = CoreSettings()
    if args.recover_admin:
        key = recover_admin(settings, email=args.recover_admin.strip().lower(), name=args.name)
        print(f"{args.recover_admin} is an admin; its new API key (shown once):", file=sys.stderr)
        print(key)
        return 0
    for path in bootstrap(settings):
        print(f"created {path} (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
