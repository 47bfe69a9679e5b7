"""The incident projection (activities/projection.py) against the real database: idempotent by seq, never
reviving an ended incident, and retried (an error) while the incident's row does not exist yet."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.projection import ProjectionActivities
from tests.conftest import Keys
from tests.flows import trigger
from vigil.contracts import IncidentProjection, IncidentStatus, Severity, TimelineEntry
from vigil.models import Incident, TimelineEvent


def projection(number: int, status: IncidentStatus, *seqs: int) -> IncidentProjection:
    at = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    return IncidentProjection(
        number=number, status=status, severity=Severity.critical, service="checkout", title="High error rate",
        acknowledged_at=at if status == IncidentStatus.acknowledged else None,
        acknowledged_by="user:rita@test" if status == IncidentStatus.acknowledged else None,
        resolved_at=None, resolved_by=None, resolution=None, closed_at=None, reopen_count=0,
        timeline=[TimelineEntry(seq=s, at=at, kind=f"k{s}", actor="timer", message=f"entry {s}") for s in seqs],
    )


def stored(sessions: sessionmaker[Session], number: int) -> tuple[str, list[int]]:
    with sessions() as session:
        row = session.get_one(Incident, number)
        seqs = session.scalars(
            select(TimelineEvent.seq).where(TimelineEvent.incident_number == number).order_by(TimelineEvent.seq)
        )
        return row.status, list(seqs)


async def test_projection_is_idempotent_and_never_revives_an_ended_incident(
    api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys)  # the API wrote the row (no worker here: nothing else projects)
    project = ProjectionActivities(sessions).project_incident
    env = ActivityEnvironment()

    env.run(project, projection(number, IncidentStatus.triggered, 101, 102))
    env.run(project, projection(number, IncidentStatus.acknowledged, 102, 103))  # a retry overlapping the last
    status, seqs = stored(sessions, number)
    assert status == "acknowledged"
    assert [s for s in seqs if s > 100] == [101, 102, 103]  # each entry once
    with sessions() as session:
        assert session.get_one(Incident, number).acknowledged_by == "user:rita@test"

    # An attempt of an older projection that outlived its timeout commits late: the row keeps the newer state,
    # and its entries are still stored once.
    env.run(project, projection(number, IncidentStatus.triggered, 100, 101))
    status, seqs = stored(sessions, number)
    assert status == "acknowledged"
    assert [s for s in seqs if s >= 100] == [100, 101, 102, 103]

    # A local projection whose workflow task was lost (Temporal down): the task ran again with one more event, and
    # seq 103 now carries another entry. The committed one replaces it.
    rerun = projection(number, IncidentStatus.acknowledged, 103)
    rerun.timeline[0].kind, rerun.timeline[0].message = "alert", "New alert: joins-existing"
    env.run(project, rerun)
    with sessions() as session:
        entry = session.scalars(select(TimelineEvent).where(TimelineEvent.incident_number == number,
                                                            TimelineEvent.seq == 103)).one()
        assert (entry.kind, entry.message) == ("alert", "New alert: joins-existing")

    with sessions.begin() as session:  # the run was terminated; the reconciler marked the row ended
        session.execute(update(Incident).where(Incident.number == number).values(status="ended", workflow_status="terminated"))
    env.run(project, projection(number, IncidentStatus.resolved, 104))  # a late attempt of that run
    assert stored(sessions, number) == ("ended", seqs)  # neither its fields nor its entries

    with pytest.raises(RuntimeError, match="has no row yet"):
        env.run(project, projection(number + 1000, IncidentStatus.triggered, 1))
