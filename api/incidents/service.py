"""Reads from the projection (works while Temporal is down) and transitions through workflow updates."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.incidents import changes
from api.incidents.schemas import (
    AlertRead,
    IncidentDetail,
    IncidentList,
    IncidentSummary,
    JiraSync,
    JiraSyncRead,
    NotificationList,
    NotificationRead,
    TimelineRead,
)
from vigil.contracts import IncidentState, IncidentStatus, Severity, parse_incident_number
from vigil.models import AlertRow, Incident, JiraIssue, JiraSyncEntry, NotificationAttempt, TimelineEvent
from vigil.settings import Settings
from vigil.contracts import incident_ref, workflow_id

MAX_LIMIT = 200


def number_of(ref: str) -> int:
    number = parse_incident_number(ref)
    if number is None:
        raise ApiError(404, "not_found", f"no incident {ref!r}; use INC-<n> or <n>")
    return number


def temporal_url(settings: Settings, number: int) -> str:
    t = settings.temporal
    return f"{t.ui_url}/namespaces/{t.namespace}/workflows/{workflow_id(number)}"


def summary(settings: Settings, row: Incident) -> IncidentSummary:
    return IncidentSummary(
        id=row.ref, number=row.number, status=IncidentStatus(row.status), severity=Severity(row.severity),
        service=row.service, title=row.title, group_key=row.group_key, created_at=row.created_at,
        updated_at=row.updated_at, acknowledged_at=row.acknowledged_at, acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at, resolved_by=row.resolved_by, resolution=row.resolution,
        closed_at=row.closed_at, reopen_count=row.reopen_count, jira_key=row.jira_key,
        temporal_url=temporal_url(settings, row.number), workflow_status=row.workflow_status,
        ended_at=row.ended_at,
    )


def list_incidents(
    *, session: Session, settings: Settings, status: IncidentStatus | None, severity: Severity | None,
    service: str | None, limit: int, offset: int,
) -> IncidentList:
    query = select(Incident)
    if status is not None:
        query = query.where(Incident.status == status.value)
    if severity is not None:
        query = query.where(Incident.severity == severity.value)
    if service is not None:
        query = query.where(Incident.service == service)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Incident.number.desc()).limit(limit).offset(offset))
    return IncidentList(items=[summary(settings, r) for r in rows], total=total, limit=limit, offset=offset)


def get_row(*, session: Session, number: int) -> Incident:
    row = session.get(Incident, number)
    if row is None:
        raise ApiError(404, "not_found", f"{incident_ref(number)} does not exist")
    return row


def detail(*, session: Session, settings: Settings, number: int, live: IncidentState | None = None) -> IncidentDetail:
    """The projected incident; `live` (from the workflow query) overrides the fields it knows first-hand."""
    row = get_row(session=session, number=number)
    alerts = session.scalars(select(AlertRow).where(AlertRow.incident_number == number).order_by(AlertRow.id))
    timeline = session.scalars(
        select(TimelineEvent).where(TimelineEvent.incident_number == number).order_by(TimelineEvent.seq)
    )
    notes = session.scalars(
        select(NotificationAttempt).where(NotificationAttempt.incident_number == number).order_by(NotificationAttempt.id)
    )
    base = summary(settings, row).model_dump()
    if live is not None:
        base.update(
            status=live.status, severity=live.severity, acknowledged_at=live.acknowledged_at,
            acknowledged_by=live.acknowledged_by, resolved_at=live.resolved_at, resolved_by=live.resolved_by,
            resolution=live.resolution, closed_at=live.closed_at, reopen_count=live.reopen_count,
        )
    return IncidentDetail(
        **base,
        alerts=[AlertRead.of(a) for a in alerts],
        timeline=changes.merged_timeline(
            session=session, number=number, timeline=[TimelineRead.model_validate(t) for t in timeline]
        ),
        notifications=[NotificationRead.of(n) for n in notes],
        recent_changes=changes.recent(session=session, number=number),
    )


def list_notifications(
    *, session: Session, number: int | None = None, status: str | None = None, channel: str | None = None,
    receipt: str | None = None, limit: int = 50, offset: int = 0,
) -> NotificationList:
    """Send attempts, newest first; filter by incident, status (sending/sent/failed), channel and receipt."""
    query = select(NotificationAttempt)
    if number is not None:
        get_row(session=session, number=number)  # 404 for an unknown incident
        query = query.where(NotificationAttempt.incident_number == number)
    if status:
        query = query.where(NotificationAttempt.status == status)
    if channel:
        query = query.where(NotificationAttempt.channel == channel)
    if receipt:
        query = query.where(NotificationAttempt.receipt == receipt)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(NotificationAttempt.id.desc()).limit(limit).offset(offset))
    return NotificationList(items=[NotificationRead.of(r) for r in rows], total=total, limit=limit, offset=offset)


def jira_sync(*, session: Session, settings: Settings, number: int) -> JiraSync:
    """The incident's Jira issue and every sync call and webhook event about it, oldest first."""
    get_row(session=session, number=number)
    key = session.scalar(select(JiraIssue.jira_key).where(JiraIssue.incident_number == number))
    rows = session.scalars(
        select(JiraSyncEntry).where(JiraSyncEntry.incident_number == number).order_by(JiraSyncEntry.id)
    )
    base = (settings.jira.url or "").rstrip("/")
    return JiraSync(
        incident=incident_ref(number), jira_key=key, issue_url=f"{base}/browse/{key}" if key and base else None,
        log=[JiraSyncRead.model_validate(r) for r in rows],
    )
