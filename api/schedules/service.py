"""Schedules and their overrides; who is on call."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import delete_unused, get_or_404, invalid, save_unique, unknown_ids
from api.errors import ApiError
from api.schedules.schemas import (
    OnCallPerson,
    OnCallRead,
    OverrideCreate,
    OverrideRead,
    ScheduleCreate,
    ScheduleRead,
    ScheduleUpdate,
)
from vigil.contracts import TargetKind
from vigil.models import Schedule, ScheduleOverride, ScheduleParticipant, User
from vigil.oncall import handoffs
from vigil.policies.service import oncall_of, policy_referrers, rotation_of


def schedule_read(row: Schedule) -> ScheduleRead:
    return ScheduleRead(
        id=row.id, name=row.name, timezone=row.timezone, handoff_weekday=row.handoff_weekday,
        handoff_time=row.handoff_time, rotation_start=row.rotation_start, participants=row.participant_ids,
        created_at=row.created_at,
    )


def override_read(row: ScheduleOverride) -> OverrideRead:
    return OverrideRead(
        id=row.id, schedule_id=row.schedule_id, user_id=row.user_id, starts_at=row.starts_at, ends_at=row.ends_at,
        created_at=row.created_at,
    )


def set_participants(session: Session, row: Schedule, participants: list[int]) -> None:
    """The same user may take several turns of a rotation; every id must exist."""
    problems = unknown_ids(session, User, participants, "body.participants", "user")
    if problems:
        raise invalid(problems)
    row.participants = [ScheduleParticipant(position=i, user_id=u) for i, u in enumerate(participants)]


def save_schedule(session: Session, row: Schedule) -> Schedule:
    save_unique(session, row, Schedule.name, f"a schedule named {row.name!r} exists")
    return row


def create_schedule(*, session: Session, body: ScheduleCreate) -> Schedule:
    row = Schedule(**body.model_dump(exclude={"participants"}))
    set_participants(session, row, body.participants)
    return save_schedule(session, row)


def update_schedule(*, session: Session, schedule_id: int, body: ScheduleUpdate) -> Schedule:
    """Takes effect at once, for running incidents too: on-call is looked up when each step runs."""
    row = get_or_404(session, Schedule, schedule_id, "schedule")
    changes = body.model_dump(exclude_unset=True)
    if "participants" in changes:
        set_participants(session, row, changes.pop("participants"))
    for name, value in changes.items():
        setattr(row, name, value)
    return save_schedule(session, row)


def delete_schedule(*, session: Session, schedule_id: int) -> None:
    """Its overrides go with it."""
    row = get_or_404(session, Schedule, schedule_id, "schedule")
    delete_unused(session, row, f"schedule {row.name!r}",
                  policy_referrers(session=session, kind=TargetKind.schedule, id=row.id))


def create_override(*, session: Session, schedule_id: int, body: OverrideCreate) -> ScheduleOverride:
    get_or_404(session, Schedule, schedule_id, "schedule")
    problems = unknown_ids(session, User, [body.user_id], "body.user_id", "user")
    if problems:
        raise invalid([("body.user_id", problems[0][1])])
    row = ScheduleOverride(schedule_id=schedule_id, **body.model_dump())
    session.add(row)
    session.commit()
    return row


def list_overrides(*, session: Session, schedule_id: int) -> list[ScheduleOverride]:
    get_or_404(session, Schedule, schedule_id, "schedule")
    query = select(ScheduleOverride).where(ScheduleOverride.schedule_id == schedule_id)
    return list(session.scalars(query.order_by(ScheduleOverride.starts_at, ScheduleOverride.id)))


def delete_override(*, session: Session, schedule_id: int, override_id: int) -> None:
    row = session.get(ScheduleOverride, override_id)
    if row is None or row.schedule_id != schedule_id:
        raise ApiError(404, "not_found", f"schedule {schedule_id} has no override {override_id}")
    session.delete(row)
    session.commit()


def oncall_read(*, session: Session, schedule_id: int, at: datetime) -> OnCallRead:
    row = get_or_404(session, Schedule, schedule_id, "schedule")
    on = oncall_of(session=session, schedule=row, at=at)
    user = session.get(User, on.user_id) if on else None
    rotation = rotation_of(row)
    next_handoff = handoffs(rotation, at, 1)[0] if rotation.participants else None
    return OnCallRead(
        user=OnCallPerson(id=user.id, name=user.name, timezone=user.timezone) if user else None,
        source=on.source if user and on else None, at=at, next_handoff=next_handoff,
    )
