"""Projection activities: the incident row and its timeline in the database, and the group-key release."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.metrics import TRANSITIONS
from vigil.contracts import IncidentProjection, IncidentStatus, ReleaseGroupInput, incident_ref
from vigil.logging import get_logger
from vigil.models import Incident, IncidentGroup, TimelineEvent

log = get_logger(__name__)
COUNTED_KINDS = {s.value for s in IncidentStatus} | {"reopened"}


class ProjectionActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @activity.defn
    def project_incident(self, inp: IncidentProjection) -> None:
        """Write the incident row and append timeline entries not yet stored (idempotent by seq)."""
        with self.sessions.begin() as session:
            incident = session.get(Incident, inp.number, with_for_update=True)
            if incident is None:
                raise RuntimeError(f"{incident_ref(inp.number)} has no row yet")  # retried: the API writes it first
            if incident.workflow_status is not None:
                # A late attempt from a run that was terminated: the row says how it ended, and keeps saying it.
                log.warning("projection of an ended incident dropped", incident=incident_ref(inp.number),
                            workflow_status=incident.workflow_status, entries=len(inp.timeline))
                return
            fields = inp.model_dump(exclude={"number", "timeline"})
            for name, value in fields.items():
                setattr(incident, name, value.value if isinstance(value, StrEnum) else value)
            stored = set(
                session.scalars(
                    select(TimelineEvent.seq).where(
                        TimelineEvent.incident_number == inp.number,
                        TimelineEvent.seq.in_([e.seq for e in inp.timeline]),
                    )
                )
            )
            fresh = [e for e in inp.timeline if e.seq not in stored]
            session.add_all(
                TimelineEvent(
                    incident_number=inp.number, seq=e.seq, at=e.at, kind=e.kind, actor=e.actor, message=e.message
                )
                for e in fresh
            )
        for entry in fresh:
            if entry.kind in COUNTED_KINDS:
                TRANSITIONS.labels(to=entry.kind).inc()
        log.info(
            "incident projected", incident=incident_ref(inp.number), workflow_id=activity.info().workflow_id,
            status=inp.status.value, entries=len(fresh),
        )

    @activity.defn
    def release_group(self, inp: ReleaseGroupInput) -> None:
        """Free the group key so the next alert of the group opens a new incident."""
        with self.sessions.begin() as session:
            session.execute(
                delete(IncidentGroup).where(
                    IncidentGroup.group_key == inp.group_key, IncidentGroup.incident_number == inp.number
                )
            )
        log.info(
            "group released", incident=incident_ref(inp.number), workflow_id=activity.info().workflow_id,
            group_key=inp.group_key,
        )
