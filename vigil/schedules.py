"""A schedule's rows as vigil.oncall values: its layers, its overrides, who is on call, its shifts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.models import Schedule, ScheduleLayer, ScheduleOverride
from vigil.oncall import (
    Layer,
    OnCall,
    Override,
    Restriction,
    Rotation,
    RotationKind,
    Shift,
    oncall_in_layers,
    parse_handoff_time,
    timeline,
)


def layer_of(schedule: Schedule, row: ScheduleLayer) -> Layer:
    rotation = Rotation(
        timezone=schedule.timezone, handoff_weekday=row.handoff_weekday, handoff_time=parse_handoff_time(row.handoff_time),
        start=row.rotation_start, participants=tuple(row.participant_ids), kind=RotationKind(row.kind), every=row.every,
    )
    restriction = None
    if row.restrict_weekdays is not None or row.restrict_start is not None:
        restriction = Restriction(
            weekdays=frozenset(row.restrict_weekdays or ()),
            start=parse_handoff_time(row.restrict_start) if row.restrict_start else None,
            end=parse_handoff_time(row.restrict_end) if row.restrict_end else None,
        )
    return Layer(rotation, restriction, row.name)


def layers_of(schedule: Schedule) -> list[Layer]:
    """Lowest first: the last one with someone wins."""
    return [layer_of(schedule, row) for row in schedule.layers]


def overrides_of(session: Session, schedule_id: int, start: datetime, end: datetime) -> list[Override]:
    """The overrides that cover some of [start, end)."""
    rows = session.scalars(
        select(ScheduleOverride).where(
            ScheduleOverride.schedule_id == schedule_id, ScheduleOverride.starts_at < end, ScheduleOverride.ends_at > start
        )
    )
    return [Override(r.user_id, r.starts_at, r.ends_at, r.created_at, r.id) for r in rows]


def oncall_of(*, session: Session, schedule: Schedule, at: datetime) -> OnCall | None:
    """Who is on call for `schedule` at `at`: an override covering `at`, else the highest layer with someone."""
    overrides = overrides_of(session, schedule.id, at, at + timedelta(microseconds=1))
    return oncall_in_layers(layers_of(schedule), overrides, at)


def shifts_of(*, session: Session, schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The schedule's shifts in [start, end), layers and overrides merged."""
    return timeline(layers_of(schedule), overrides_of(session, schedule.id, start, end), start, end)
