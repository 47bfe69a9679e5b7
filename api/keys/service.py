"""API keys: created and revoked by their owner or an admin, each operation in the audit log."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import get_or_404, invalid
from api.errors import ApiError
from api.keys.schemas import KeyCreate, KeyCreated, KeyRead
from api.people.service import lock_admins
from vigil import audit
from vigil.models import ApiKey, User, utcnow
from vigil.security import hash_key, key_prefix, new_key


def list_keys(*, session: Session, user_id: int) -> list[KeyRead]:
    rows = session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id))
    return [KeyRead.model_validate(r) for r in rows]


def create_key(*, session: Session, user_id: int, body: KeyCreate, actor: str, actor_id: int, client: str | None) -> KeyCreated:
    """A new key for `user_id`; the plaintext is in the result only."""
    user = get_or_404(session, User, user_id, "user")
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise invalid([("body.expires_at", "is in the past; a key must expire later than now")])
    key = new_key("api")
    row = ApiKey(user_id=user.id, name=body.name, prefix=key_prefix(key), key_hash=hash_key(key),
                 created_at=utcnow(), expires_at=body.expires_at)
    session.add(row)
    audit.record(session, "key.create", actor=actor, actor_user_id=actor_id, subject_user_id=user.id, key=row,
                 client=client, detail=f"name {body.name!r}" + (f", expires {body.expires_at.isoformat()}" if body.expires_at else ""))
    session.commit()
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=key)


def revoke_key(*, session: Session, user_id: int, key_id: int, actor: str, actor_id: int, client: str | None) -> None:
    """Revoke one of `user_id`'s keys (idempotent); 409 for the last usable key of the last admins."""
    row = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
    if row is None:
        raise ApiError(404, "not_found", f"user {user_id} has no key {key_id}")
    if row.revoked_at is not None:
        return
    admins = lock_admins(session)
    if row.user_id in admins:
        now = utcnow()
        others = session.scalar(
            select(ApiKey.id).where(
                ApiKey.user_id.in_(admins), ApiKey.id != row.id, ApiKey.revoked_at.is_(None),
                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
            ).limit(1)
        )
        if others is None:
            raise ApiError(
                409, "last_admin",
                f"key {key_id} is the last usable admin key; revoking it would leave no one able to manage Vigil. "
                "Create another admin key first.",
                {"key_id": key_id},
            )
    row.revoked_at = utcnow()
    audit.record(session, "key.revoke", actor=actor, actor_user_id=actor_id, subject_user_id=user_id, key=row,
                 client=client)
    session.commit()
