"""Projection activities: the incident row and its timeline in the database, and the group-key release."""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.metrics import TRANSITIONS
from vigil.contracts import IncidentProjection, IncidentStatus, ReleaseGroupInput, incident_ref
from vigil.logging import get_logger
from vigil.models import Incident, IncidentGroup, TimelineEvent

log = get_logger(__name__)
COUNTED_KINDS = {s.value for s in IncidentStatus} | {"reopened"}
PROJECTED = tuple(n for n in IncidentProjection.model_fields if n not in ("number", "timeline"))
# Built once, with bound parameters, so each projection only binds values: building and compiling statements
# from the values themselves was most of this activity's CPU.
# Only a live row, and only from the newest projection: an attempt that outlived its timeout (a local attempt
# cut off after 2 s, its thread still blocked on a lock) and commits after a later projection did must not put
# the row back to an older state. The later projection stored entries past this one's last seq.
UPDATE_LIVE = (
    update(Incident)
    .where(
        Incident.number == bindparam("p_number"),
        Incident.workflow_status.is_(None),
        ~exists().where(TimelineEvent.incident_number == bindparam("p_number"),
                        TimelineEvent.seq > bindparam("p_last_seq")),
    )
    .values({name: bindparam(f"p_{name}") for name in PROJECTED})
    .returning(Incident.number)
)
NO_SEQ = 2**62  # a projection without entries: nothing to be older than


@cache
def _insert_entries(dialect: str):  # noqa: ANN202 - dialect-specific Insert
    """INSERT of timeline entries; an (incident, seq) already stored is left alone when it says the same, and
    rewritten when it does not. A local projection runs before its workflow task is committed: if that task is
    lost (Temporal unavailable, the worker gone), the task runs again, possibly with more events (an alert that
    arrived meanwhile), and the same seq can then carry another entry. The committed run's entry wins. Returns the
    kinds inserted or rewritten (a retried attempt returns none)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(TimelineEvent)
    new = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["incident_number", "seq"],
        set_={"at": new.at, "kind": new.kind, "actor": new.actor, "message": new.message},
        where=(TimelineEvent.kind != new.kind) | (TimelineEvent.actor != new.actor)
        | (TimelineEvent.message != new.message),
    ).returning(TimelineEvent.kind)


class ProjectionActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @activity.defn(no_thread_cancel_exception=True)
    def project_incident(self, inp: IncidentProjection) -> None:
        """Write the incident row and append timeline entries not yet stored (idempotent by seq).

        Two statements in one transaction (it runs inside the incident's workflow task, once or twice per page in
        a burst): an UPDATE of a row that has not ended, and an INSERT of the entries that skips the ones a
        retried attempt already stored."""
        params = {
            f"p_{name}": value.value if isinstance(value, StrEnum) else value
            for name, value in inp.model_dump(include=set(PROJECTED)).items()
        }
        with self.sessions.begin() as session:
            conn = session.connection()
            last_seq = max((e.seq for e in inp.timeline), default=NO_SEQ)
            if conn.execute(UPDATE_LIVE, {"p_number": inp.number, "p_last_seq": last_seq, **params}).first() is None:
                row = conn.execute(select(Incident.workflow_status).where(Incident.number == inp.number)).first()
                if row is None:
                    raise RuntimeError(f"{incident_ref(inp.number)} has no row yet")  # retried: the API writes it first
                if row.workflow_status is not None:
                    # A late attempt from a run that was terminated: the row says how it ended, and keeps saying it.
                    log.warning("projection of an ended incident dropped", incident=incident_ref(inp.number),
                                workflow_status=row.workflow_status, entries=len(inp.timeline))
                    return
                # A later projection landed first: its fields stand; this one's entries are stored below.
                log.info("late projection: the row keeps the newer state", incident=incident_ref(inp.number),
                         last_seq=last_seq)
            fresh: list[str] = []
            if inp.timeline:
                fresh = list(conn.execute(
                    _insert_entries(conn.dialect.name),
                    [{"incident_number": inp.number, "seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor,
                      "message": e.message} for e in inp.timeline],
                ).scalars())
        for kind in fresh:
            if kind in COUNTED_KINDS:
                TRANSITIONS.labels(to=kind).inc()
        log.info(
            "incident projected", incident=incident_ref(inp.number), workflow_id=activity.info().workflow_id,
            status=inp.status.value, entries=len(fresh),
        )

    @activity.defn(no_thread_cancel_exception=True)
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
