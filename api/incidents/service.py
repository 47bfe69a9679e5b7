"""Reads from the projection (works while Temporal is down) and transitions through workflow updates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Row
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
from api.incidents import people
from api.incidents.schemas import OPEN, OPEN_STATUSES
from vigil.contracts import IncidentState, IncidentStatus, Severity, parse_incident_number
from vigil.ingest.fit import as_utc
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


def summary(settings: Settings, row: Incident | Row, assignee: str | None = None) -> IncidentSummary:
    return IncidentSummary(
        assignee=assignee, acknowledged_by_name=people.display_actor(row.acknowledged_by),
        resolved_by_name=people.display_actor(row.resolved_by),
        id=incident_ref(row.number), number=row.number, status=IncidentStatus(row.status), severity=Severity(row.severity),
        service=row.service, title=row.title, group_key=row.group_key, created_at=row.created_at,
        updated_at=row.updated_at, acknowledged_at=row.acknowledged_at, acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at, resolved_by=row.resolved_by, resolution=row.resolution,
        closed_at=row.closed_at, reopen_count=row.reopen_count, jira_key=row.jira_key,
        temporal_url=temporal_url(settings, row.number), workflow_status=row.workflow_status,
        ended_at=row.ended_at,
    )


def list_incidents(
    *, session: Session, settings: Settings, status: Sequence[str] = (), severity: Severity | None,
    service: str | None, limit: int, offset: int, assignee: str | None = None,
    opened_after: datetime | None = None, opened_before: datetime | None = None,
) -> IncidentList:
    """Newest first; several statuses match any of them (`open`: triggered, acknowledged or resolved)."""
    query = select(Incident)
    if statuses := statuses_of(status):
        query = query.where(Incident.status.in_(statuses))
    if assignee is not None:
        query = query.where(people.assigned_to(assignee))
    if opened_after is not None:
        query = query.where(Incident.created_at >= as_utc(opened_after))
    if opened_before is not None:
        query = query.where(Incident.created_at < as_utc(opened_before))
    if severity is not None:
        query = query.where(Incident.severity == severity.value)
    if service is not None:
        query = query.where(Incident.service == service)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Incident.number.desc()).limit(limit).offset(offset)))
    owners = people.assignees(session, [r.number for r in rows])
    return IncidentList(
        items=[summary(settings, r, owners.get(r.number)) for r in rows], total=total, limit=limit, offset=offset
    )


def statuses_of(given: Sequence[str]) -> list[str]:
    """The statuses asked for, `open` expanded; empty: any."""
    return sorted({s for g in given for s in (OPEN_STATUSES if g == OPEN else (g,))})


def get_row(*, session: Session, number: int) -> Incident:
    row = session.get(Incident, number)
    if row is None:
        raise ApiError(404, "not_found", f"{incident_ref(number)} does not exist")
    return row


# The reads of one incident's answer (every transition answers with it, issue 11), built once: Core rows, not ORM
# objects, and the incident's number a parameter.
_INCIDENTS, _ALERTS = Incident.__table__, AlertRow.__table__
_TIMELINE, _NOTIFICATIONS = TimelineEvent.__table__, NotificationAttempt.__table__
_READ_ROW = select(_INCIDENTS).where(_INCIDENTS.c.number == bindparam("number"))
_READ_ALERTS = select(_ALERTS).where(_ALERTS.c.incident_number == bindparam("number")).order_by(_ALERTS.c.id)
_READ_TIMELINE = (
    select(_TIMELINE.c.seq, _TIMELINE.c.at, _TIMELINE.c.kind, _TIMELINE.c.actor, _TIMELINE.c.message)
    .where(_TIMELINE.c.incident_number == bindparam("number")).order_by(_TIMELINE.c.seq)
)
_READ_NOTIFICATIONS = (
    select(_NOTIFICATIONS).where(_NOTIFICATIONS.c.incident_number == bindparam("number"))
    .order_by(_NOTIFICATIONS.c.id)
)


def detail(
    *, session: Session, settings: Settings, number: int, live: IncidentState | None = None, unmask: bool = False,
) -> IncidentDetail:
    """The projected incident; `live` (from the workflow query) overrides the fields it knows first-hand.
    `unmask`: the acknowledger's address in full, for roles that may see contacts.

    Five statements: the row, its alerts, timeline and notifications, and its service's changes (the recent ones
    and those made while it was open, in one); the assignee is the timeline's newest assignment."""
    params = {"number": number}
    row = session.execute(_READ_ROW, params).first()
    if row is None:
        raise ApiError(404, "not_found", f"{incident_ref(number)} does not exist")
    alerts = [AlertRead.of(a) for a in session.execute(_READ_ALERTS, params)]
    timeline = [TimelineRead.model_validate(t) for t in session.execute(_READ_TIMELINE, params)]
    notes = [NotificationRead.of(n) for n in session.execute(_READ_NOTIFICATIONS, params)]
    recent, while_open = changes.of_incident(session=session, row=row)
    base = summary(settings, row, people.assignee_in(timeline)).model_dump()
    if live is not None:
        base.update(
            status=live.status, severity=live.severity, acknowledged_at=live.acknowledged_at,
            acknowledged_by=live.acknowledged_by, resolved_at=live.resolved_at, resolved_by=live.resolved_by,
            resolution=live.resolution, closed_at=live.closed_at, reopen_count=live.reopen_count,
            assignee=live.assignee, resolved_by_name=people.display_actor(live.resolved_by),
        )
    shown = people.unmasked_acknowledger if unmask else (lambda _s, _n, label: people.display_actor(label))
    retriggers_at, snoozed_until = people.quiet_until(live)
    return IncidentDetail(
        **{**base, "acknowledged_by_name": shown(session, number, base["acknowledged_by"])},
        retriggers_at=retriggers_at, snoozed_until=snoozed_until,
        alerts=alerts,
        timeline=changes.merged(timeline, while_open),
        notifications=notes,
        recent_changes=recent,
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
