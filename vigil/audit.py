"""The audit log of key and admin operations: one row per operation, written in the operation's transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vigil.models import ApiKey, AuditEntry, utcnow


def record(
    session: Session, action: str, *, actor: str, actor_user_id: int | None = None,
    subject_user_id: int | None = None, key: ApiKey | None = None, client: str | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """Add an entry to `session`; it commits (or rolls back) with the change it describes."""
    if key is not None:
        session.flush()  # the key's id
    entry = AuditEntry(
        at=utcnow(), action=action, actor=actor[:320], actor_user_id=actor_user_id, subject_user_id=subject_user_id,
        key_id=key.id if key is not None else None, key_prefix=key.prefix if key is not None else None,
        client=(client or None) and client[:64], detail=detail,
    )
    session.add(entry)
    return entry
