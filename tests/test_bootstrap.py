"""First-start keys: created once, 0600, one line, and they work."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.bootstrap import ADMIN_KEY_FILE, INTEGRATION_KEY_FILE, bootstrap
from vigil.models import ApiKey, Integration, User
from vigil.security import hash_key
from vigil.settings import CoreSettings


def test_bootstrap_creates_keys_once(tmp_path: Path, database_url: str, sessions: sessionmaker[Session]) -> None:
    settings = CoreSettings(database_url=database_url, data_dir=tmp_path)
    created = bootstrap(settings)
    assert sorted(Path(p).name for p in created) == sorted([ADMIN_KEY_FILE, INTEGRATION_KEY_FILE])
    contents = {}
    for name in (ADMIN_KEY_FILE, INTEGRATION_KEY_FILE):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert text.endswith("\n") and text.count("\n") == 1
        contents[name] = text.strip()

    assert bootstrap(settings) == []  # idempotent: a second `make run` keeps the keys
    assert (tmp_path / ADMIN_KEY_FILE).read_text().strip() == contents[ADMIN_KEY_FILE]

    with sessions() as session:
        admin = session.scalar(
            select(User).join(ApiKey).where(ApiKey.key_hash == hash_key(contents[ADMIN_KEY_FILE]))
        )
        assert admin is not None and admin.role == "admin"
        assert session.scalar(select(Integration.name).where(Integration.key_hash == hash_key(contents[INTEGRATION_KEY_FILE]))) == "default"
        # Only hashes are stored.
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.key_hash == contents[ADMIN_KEY_FILE])) == 0

    (tmp_path / ADMIN_KEY_FILE).unlink()  # rotation: delete the file and bootstrap again
    assert [Path(p).name for p in bootstrap(settings)] == [ADMIN_KEY_FILE]
    assert (tmp_path / ADMIN_KEY_FILE).read_text().strip() != contents[ADMIN_KEY_FILE]
    with sessions() as session:
        old = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(contents[ADMIN_KEY_FILE])))
        assert old is not None and old.revoked_at is not None
