"""Change events (deploys, config changes, flag flips) as incident context: stored once, read per service by time.

Nothing is sent to a workflow when a change arrives: an incident reads its service's changes when it is read,
so a deploy storm costs one row per change, never a message per open incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
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


def recent_changes(session: Session, number: int, *, now: datetime | None = None) -> list[Change]:
    """The incident's recent changes: its service's, from RECENT_WINDOW before it opened until now, newest first."""
    incident = _incident(session, number)
    rows = session.scalars(
        select(ChangeEvent)
        .where(ChangeEvent.service == incident.service, ChangeEvent.at >= incident.created_at - RECENT_WINDOW,
               ChangeEvent.at <= (now or utcnow()))
        .order_by(ChangeEvent.at.desc(), ChangeEvent.id.desc())
        .limit(RECENT_LIMIT)
    )
    return [Change.model_validate(r) for r in rows]


def changes_while_open(session: Session, number: int, *, now: datetime | None = None) -> list[Change]:
    """Its service's changes from the incident's opening to its close (or now), oldest first, the newest kept."""
    incident = _incident(session, number)
    until = incident.closed_at or incident.ended_at or now or utcnow()
    rows = session.scalars(
        select(ChangeEvent)
        .where(ChangeEvent.service == incident.service, ChangeEvent.at >= incident.created_at,
               ChangeEvent.at <= until)
        .order_by(ChangeEvent.at.desc(), ChangeEvent.id.desc())
        .limit(TIMELINE_LIMIT)
    )
    return [Change.model_validate(r) for r in reversed(list(rows))]


def _incident(session: Session, number: int) -> Incident:
    incident = session.get(Incident, number)
    if incident is None:
        raise LookupError(f"{incident_ref(number)} does not exist")
    return incident
