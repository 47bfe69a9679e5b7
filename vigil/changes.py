"""Change events (deploys, config changes, flag flips) as incident context: stored once, read per service by time.

Nothing is sent to a workflow when a change arrives: an incident reads its service's changes when it is read,
so a deploy storm costs one row per change, never a message per open incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.orm import Session

from vigil.contracts import Alert, Severity, incident_ref
from vigil.ingest.fit import MAX_SERVICE, bounded, clean
from vigil.models import ChangeEvent, Incident, utcnow
from vigil.rules import IntegrationRules

# "What changed just before?": the changes of the incident's service from a day before it opened until now,
# newest first, at most RECENT_LIMIT of them.
RECENT_WINDOW = timedelta(hours=24)
RECENT_LIMIT = 20
# The timeline shows the changes made while the incident was open, at most the TIMELINE_LIMIT newest.
TIMELINE_LIMIT = 50
UNKNOWN_SERVICE = "unknown"


class Change(BaseModel):
    """One change event as incidents and postmortems show it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    service: str
    summary: str
    source: str | None
    custom_details: dict[str, Any]
    links: list[dict[str, str]]
    received_at: datetime


def routed_service(rules: IntegrationRules, *, source: str | None, custom_details: dict[str, Any]) -> str:
    """The change's service: `custom_details.service`, else its source, then the integration's routes, as for alerts."""
    named = custom_details.get("service")
    service = named.strip() if isinstance(named, str) and named.strip() else (source or UNKNOWN_SERVICE)
    service = bounded(clean(service), MAX_SERVICE)
    probe = Alert(
        fingerprint="change", summary="change", severity=Severity.info, service=service, source=source or "",
        labels={"source": source or "", "service": service},
    )
    return bounded(rules.apply(probe).service, MAX_SERVICE)


# Both lists in one statement, built once (every transition answers with the incident, issue 11): each part keeps
# its own window and limit, newest first; `part` says which list a row belongs to.
_C = ChangeEvent.__table__.c
_RECENT, _WHILE_OPEN = 0, 1


def _part(part: int, since: str, until: str, limit: int):  # noqa: ANN202 - a subquery
    return (
        select(literal(part).label("part"), _C.id, _C.at, _C.service, _C.summary, _C.source, _C.custom_details,
               _C.links, _C.received_at)
        .where(_C.service == bindparam("service"), _C.at >= bindparam(since), _C.at <= bindparam(until))
        .order_by(_C.at.desc(), _C.id.desc())
        .limit(limit)
        .subquery()
    )


_READ_CHANGES = union_all(
    *(select(p) for p in (_part(_RECENT, "recent_since", "now", RECENT_LIMIT),
                          _part(_WHILE_OPEN, "opened_at", "open_until", TIMELINE_LIMIT)))
)


def of_incident(
    session: Session, *, service: str, created_at: datetime, closed_at: datetime | None, now: datetime | None = None,
) -> tuple[list[Change], list[Change]]:
    """(recent, while open) for an incident of `service` opened at `created_at`: its service's changes from
    RECENT_WINDOW before it opened until now, newest first, and those from its opening to its close (or now), oldest
    first, the newest TIMELINE_LIMIT kept."""
    now = now or utcnow()
    rows = session.execute(_READ_CHANGES, {
        "service": service, "recent_since": created_at - RECENT_WINDOW, "now": now,
        "opened_at": created_at, "open_until": closed_at or now,
    }).all()
    newest_first = sorted(rows, key=lambda r: (r.at, r.id), reverse=True)
    recent = [Change.model_validate(r) for r in newest_first if r.part == _RECENT]
    while_open = [Change.model_validate(r) for r in reversed(newest_first) if r.part == _WHILE_OPEN]
    return recent, while_open


def recent_changes(session: Session, number: int, *, now: datetime | None = None) -> list[Change]:
    """The incident's recent changes: its service's, from RECENT_WINDOW before it opened until now, newest first."""
    incident = _incident(session, number)
    return of_incident(session, service=incident.service, created_at=incident.created_at,
                       closed_at=incident.closed_at or incident.ended_at, now=now)[0]


def _incident(session: Session, number: int) -> Incident:
    incident = session.get(Incident, number)
    if incident is None:
        raise LookupError(f"{incident_ref(number)} does not exist")
    return incident
