"""DB projections of the workflow's state: incident row, timeline, group-key release."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.metrics import TRANSITIONS
from vigil.contracts import (
    EscalationPolicy,
    FrozenPolicy,
    IncidentProjection,
    IncidentStatus,
    LoadPolicyInput,
    ReleaseGroupInput,
    ResolveTargetsInput,
    ResolveTargetsResult,
)
from vigil.escalation import contact_recipient, default_plan, default_policy
from vigil.policies import service as policies
from vigil.logging import get_logger
from vigil.models import Incident, IncidentGroup, TimelineEvent
from vigil.settings import EscalationSettings
from vigil.contracts import incident_ref

log = get_logger(__name__)
COUNTED_KINDS = {s.value for s in IncidentStatus} | {"reopened"}


class StoreActivities:
    def __init__(self, sessions: sessionmaker[Session], escalation: EscalationSettings) -> None:
        self.sessions = sessions
        self.escalation = escalation

    @activity.defn
    def load_escalation_policy(self, inp: LoadPolicyInput) -> EscalationPolicy:
        """The fixed ladder of incidents started before escalation policies (kept for their replay)."""
        return default_policy(self.escalation)

    @activity.defn
    def freeze_escalation_policy(self, inp: LoadPolicyInput) -> FrozenPolicy:
        """The policy routed for this service and severity, with its waits scaled, frozen into a new incident;
        the built-in ladder from settings when no route matches."""
        default = default_plan(self.escalation)
        try:
            with self.sessions() as session:
                plan = policies.freeze_policy(session=session, service=inp.service, severity=inp.severity, default=default)
        except SQLAlchemyError as err:
            # Never hold the first page for the database: page by the built-in ladder instead.
            log.error("policy database unavailable; freezing the default ladder", error=str(err),
                      workflow_id=activity.info().workflow_id)
            return default.model_copy(update={"name": "default (policy database unavailable)"})
        log.info("escalation policy frozen", workflow_id=activity.info().workflow_id, policy=plan.name)
        return plan

    @activity.defn
    def resolve_targets(self, inp: ResolveTargetsInput) -> ResolveTargetsResult:
        """Who a step pages right now: users, group members, whoever is on call, webhooks."""
        try:
            with self.sessions() as session:
                return policies.resolve_targets(session=session, targets=inp.targets, at=inp.at)
        except SQLAlchemyError as err:
            # The people tables are unreachable: page the default on-call contact rather than nobody.
            log.error("policy database unavailable; paging the default on-call contact", error=str(err),
                      workflow_id=activity.info().workflow_id)
            fallback = default_plan(self.escalation).steps[0].targets
            return ResolveTargetsResult(
                recipients=[contact_recipient(t) for t in fallback],
                unresolved=["database unavailable: paged the default on-call contact instead"],
            )

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
