"""GET /api/v1/alerts: filter by status, fingerprint, group and incident."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from api.deps import SessionDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError
from api.incidents.schemas import AlertRead
from vigil.contracts import AlertStatus, parse_incident_number
from vigil.models import AlertRow, Incident

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
MAX_LIMIT = 500


class AlertItem(AlertRead):
    id: int
    incident: str
    group_key: str
    starts_at: datetime | None
    ends_at: datetime | None
    delivered: bool


class AlertList(BaseModel):
    items: list[AlertItem]
    total: int
    limit: int
    offset: int


@router.get("", response_model=AlertList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def list_alerts(
    _user: Viewer,
    session: SessionDep,
    status: AlertStatus | None = None,
    fingerprint: str | None = None,
    group: Annotated[str | None, Query(description="Group key, e.g. service=checkout|alertname=HighErrorRate")] = None,
    incident: Annotated[str | None, Query(description="INC-42 or 42")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AlertList:
    """Newest first. `delivered` is false while a change waits in the outbox for its workflow."""
    query = select(AlertRow, Incident.group_key).join(Incident, Incident.number == AlertRow.incident_number)
    if status is not None:
        query = query.where(AlertRow.status == status.value)
    if fingerprint is not None:
        query = query.where(AlertRow.fingerprint == fingerprint)
    if group is not None:
        query = query.where(Incident.group_key == group)
    if incident is not None:
        number = parse_incident_number(incident)
        if number is None:
            raise ApiError(422, "validation_error", "incident must look like INC-42 or 42",
                           [{"field": "query.incident", "message": "invalid incident reference", "type": "value_error"}])
        query = query.where(AlertRow.incident_number == number)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(AlertRow.id.desc()).limit(limit).offset(offset))
    items = [
        AlertItem(
            **AlertRead.model_validate(row).model_dump(),
            id=row.id, incident=f"INC-{row.incident_number}", group_key=group_key, starts_at=row.starts_at,
            ends_at=row.ends_at, delivered=row.delivered_status == row.status,
        )
        for row, group_key in rows
    ]
    return AlertList(items=items, total=total, limit=limit, offset=offset)
