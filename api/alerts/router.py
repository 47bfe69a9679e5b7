"""GET /api/v1/alerts: every stored alert, in an incident or held (silenced, suppressed)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.deps import Admin, SessionDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError
from api.incidents.schemas import AlertRead
from vigil.contracts import Id, Offset, parse_incident_number
from vigil.ingest import store
from vigil.models import AlertRow, HeldAlert, Incident
from vigil.contracts import incident_ref

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
MAX_LIMIT = 500


class AlertFilter(StrEnum):
    firing = "firing"
    resolved = "resolved"
    silenced = "silenced"
    suppressed = "suppressed"
    pending = "pending"
    dead_letter = "dead_letter"


class AlertItem(AlertRead):
    id: int
    disposition: str  # incident | silenced | suppressed | pending
    incident: str | None
    group_key: str
    starts_at: datetime | None
    ends_at: datetime | None
    delivered: bool
    delivery_attempts: int = Field(0, description="Refusals by Temporal so far (outages are not counted).")
    delivery_error: str | None = Field(None, description="The last refusal.")
    dead_lettered_at: datetime | None = Field(
        None, description="Set when the alert was taken out of the outbox after repeated refusals (docs/runbook.md)."
    )


class AlertList(BaseModel):
    items: list[AlertItem]
    total: int
    limit: int
    offset: int


@router.get("", response_model=AlertList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def list_alerts(
    _user: Viewer,
    session: SessionDep,
    status: Annotated[AlertFilter | None, Query(description="firing / resolved at the source, or held")] = None,
    fingerprint: str | None = None,
    group: Annotated[str | None, Query(description="Group key, e.g. service=checkout|alertname=HighErrorRate")] = None,
    incident: Annotated[str | None, Query(description="INC-42 or 42")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> AlertList:
    """Newest first (by last seen). `delivered` is false while a change waits in the outbox."""
    number = None
    if incident is not None:
        number = parse_incident_number(incident)
        if number is None:
            raise ApiError(422, "validation_error", "incident must look like INC-42 or 42",
                           [{"field": "query.incident", "message": "invalid incident reference", "type": "value_error"}])
    held_only = status in (AlertFilter.silenced, AlertFilter.suppressed, AlertFilter.pending)
    attached_only = status in (AlertFilter.firing, AlertFilter.resolved, AlertFilter.dead_letter) or number is not None
    parts: list[tuple[int, list[AlertItem]]] = []
    if not held_only:
        query = _attached(status, fingerprint, group, number)
        parts.append(_page(session, query, limit + offset, _attached_item))
    if not attached_only:
        query = _held(status, fingerprint, group)
        parts.append(_page(session, query, limit + offset, _held_item))
    merged = sorted((item for _, items in parts for item in items), key=lambda i: i.last_seen, reverse=True)
    return AlertList(items=merged[offset: offset + limit], total=sum(t for t, _ in parts), limit=limit, offset=offset)


def _attached(status: AlertFilter | None, fingerprint: str | None, group: str | None, number: int | None) -> Select:
    query = select(AlertRow, Incident.group_key).join(Incident, Incident.number == AlertRow.incident_number)
    if status == AlertFilter.dead_letter:
        query = query.where(AlertRow.dead_lettered_at.is_not(None))
    elif status is not None:
        query = query.where(AlertRow.status == status.value)
    if fingerprint is not None:
        query = query.where(AlertRow.fingerprint == fingerprint)
    if group is not None:
        query = query.where(Incident.group_key == group)
    if number is not None:
        query = query.where(AlertRow.incident_number == number)
    return query.order_by(AlertRow.last_seen.desc(), AlertRow.id.desc())


def _held(status: AlertFilter | None, fingerprint: str | None, group: str | None) -> Select:
    query = select(HeldAlert, HeldAlert.group_key)
    if status is not None:
        query = query.where(HeldAlert.disposition == status.value)
    if fingerprint is not None:
        query = query.where(HeldAlert.fingerprint == fingerprint)
    if group is not None:
        query = query.where(HeldAlert.group_key == group)
    return query.order_by(HeldAlert.last_seen.desc(), HeldAlert.id.desc())


def _page(session: Session, query: Select, n: int, to_item) -> tuple[int, list[AlertItem]]:  # noqa: ANN001
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    return total, [to_item(row, key) for row, key in session.execute(query.limit(n))]


def _attached_item(row: AlertRow, group_key: str) -> AlertItem:
    return AlertItem(
        **AlertRead.model_validate(row).model_dump(), id=row.id, disposition="incident",
        incident=incident_ref(row.incident_number), group_key=group_key, starts_at=row.starts_at, ends_at=row.ends_at,
        delivered=row.delivered_status == row.status, delivery_attempts=row.delivery_attempts,
        delivery_error=row.delivery_error, dead_lettered_at=row.dead_lettered_at,
    )


def _held_item(row: HeldAlert, group_key: str) -> AlertItem:
    return AlertItem(
        **AlertRead.model_validate(row).model_dump(), id=row.id, disposition=row.disposition,
        incident=incident_ref(row.released_to) if row.released_to else None, group_key=group_key,
        starts_at=row.starts_at, ends_at=row.ends_at, delivered=row.released_to is not None,
    )


@router.post(
    "/{alert_id:int}/redeliver", response_model=AlertItem, status_code=202,
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422)},
)
def redeliver(alert_id: Annotated[Id, Path()], _admin: Admin, session: SessionDep) -> AlertItem:
    """Put a dead-lettered alert back in the outbox with a fresh count of tries; the reconciler delivers it."""
    row = store.redeliver_dead_letter(session, alert_id=alert_id)
    if row is None:
        if session.get(AlertRow, alert_id) is None:
            raise ApiError(404, "not_found", f"no alert {alert_id} in an incident")
        raise ApiError(409, "conflict", f"alert {alert_id} is not dead-lettered")
    session.commit()
    group_key = session.get_one(Incident, row.incident_number).group_key
    return _attached_item(row, group_key)
