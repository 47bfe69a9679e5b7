"""Heartbeat monitors in the database: rows, tokens (stored as hashes) and what the workflow is started from."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import commit_or_409, get_or_404
from api.errors import ApiError
from api.heartbeats.schemas import HeartbeatCreate, HeartbeatRead, HeartbeatUpdate, MonitorStatus
from vigil.contracts import HeartbeatConfig, HeartbeatInput, Severity, incident_ref
from vigil.models import HeartbeatMonitor, utcnow
from vigil.security import hash_key, key_prefix

CHECK_IN_PATH = "/api/v1/heartbeats/check-in"


def _conflict(name: str) -> str:
    return f"a heartbeat monitor named {name!r} already exists"


def config_of(row: HeartbeatMonitor) -> HeartbeatConfig:
    return HeartbeatConfig(
        name=row.name, service=row.service, severity=Severity(row.severity), interval_seconds=row.interval_seconds,
        grace_seconds=row.grace_seconds, paused=row.paused,
    )


def input_of(row: HeartbeatMonitor) -> HeartbeatInput:
    """The workflow's start input from the row: a restarted timer resumes a firing alert's episode."""
    return HeartbeatInput(
        monitor_id=row.id, config=config_of(row), missed=row.misses, firing=row.down_since is not None,
        last_check_in=row.last_check_in_at,
    )


def read(row: HeartbeatMonitor) -> HeartbeatRead:
    if row.down_since is not None:
        status = MonitorStatus.down
    elif row.paused:
        status = MonitorStatus.paused
    else:
        status = MonitorStatus.waiting if row.last_check_in_at is None else MonitorStatus.up
    return HeartbeatRead(
        id=row.id, name=row.name, service=row.service, severity=Severity(row.severity),
        interval_seconds=row.interval_seconds, grace_seconds=row.grace_seconds, paused=row.paused, status=status,
        token_prefix=row.token_prefix, last_check_in_at=row.last_check_in_at, down_since=row.down_since,
        incident=incident_ref(row.incident_number) if row.incident_number else None, created_by=row.created_by,
        created_at=row.created_at,
    )


def create(*, session: Session, body: HeartbeatCreate, token: str, actor: str) -> HeartbeatMonitor:
    """The new row, committed; 409 if the name is taken."""
    if session.scalar(select(HeartbeatMonitor.id).where(HeartbeatMonitor.name == body.name)) is not None:
        raise ApiError(409, "conflict", _conflict(body.name))
    row = HeartbeatMonitor(
        **body.model_dump(mode="json"), paused=False, token_prefix=key_prefix(token), token_hash=hash_key(token),
        created_by=actor, created_at=utcnow(), misses=0,
    )
    session.add(row)
    commit_or_409(session, _conflict(body.name))
    return row


def by_token(*, session: Session, token: str) -> HeartbeatMonitor:
    row = session.scalar(select(HeartbeatMonitor).where(HeartbeatMonitor.token_hash == hash_key(token)))
    if row is None:
        raise ApiError(404, "not_found", "no heartbeat monitor has this check-in token")
    return row


def get(*, session: Session, monitor_id: int) -> HeartbeatMonitor:
    return get_or_404(session, HeartbeatMonitor, monitor_id, "heartbeat monitor")


def changed(*, session: Session, monitor_id: int, body: HeartbeatUpdate) -> HeartbeatInput:
    """The workflow input with the change applied (nothing written yet); 404, or 409 for a taken name."""
    row = get(session=session, monitor_id=monitor_id)
    changes = body.model_dump(exclude_unset=True)
    name = changes.get("name")
    if name is not None and session.scalar(
        select(HeartbeatMonitor.id).where(HeartbeatMonitor.name == name, HeartbeatMonitor.id != monitor_id)
    ) is not None:
        raise ApiError(409, "conflict", _conflict(name))
    inp = input_of(row)
    return inp.model_copy(update={"config": inp.config.model_copy(update=changes)})


def save_config(*, session: Session, monitor_id: int, config: HeartbeatConfig) -> HeartbeatMonitor:
    """Write the settings the workflow took."""
    row = get(session=session, monitor_id=monitor_id)
    row.name, row.service, row.severity = config.name, config.service, config.severity.value
    row.interval_seconds, row.grace_seconds, row.paused = config.interval_seconds, config.grace_seconds, config.paused
    commit_or_409(session, _conflict(config.name))
    return row


def checked_in(*, session: Session, monitor_id: int) -> None:
    row = session.get(HeartbeatMonitor, monitor_id)
    if row is not None:
        row.last_check_in_at = utcnow()
        session.commit()


def delete(*, session: Session, monitor_id: int) -> None:
    row = session.get(HeartbeatMonitor, monitor_id)
    if row is not None:
        session.delete(row)
        session.commit()
