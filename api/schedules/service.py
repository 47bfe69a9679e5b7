"""Schedules, their layers and overrides; who is on call."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import delete_unused, get_or_404, invalid, save_unique, unknown_ids
from api.errors import ApiError
from api.schedules.schemas import (
    LayerIn,
    LayerRead,
    OnCallLayer,
    OnCallPerson,
    OnCallRead,
    OverrideCreate,
    OverrideRead,
    Restriction,
    ScheduleCreate,
    ScheduleRead,
    ScheduleUpdate,
)
from vigil.contracts import TargetKind
from vigil.models import Schedule, ScheduleLayer, ScheduleOverride, ScheduleParticipant, User
from vigil.oncall import next_change
from vigil.policies.service import oncall_of, policy_referrers
from vigil.schedules import layers_of, overrides_of

NEXT_HANDOFF_HORIZON = timedelta(days=366)


def layer_read(row: ScheduleLayer) -> LayerRead:
    restriction = None
    if row.restrict_weekdays is not None or row.restrict_start is not None:
        restriction = Restriction(weekdays=row.restrict_weekdays or [], start=row.restrict_start, end=row.restrict_end)
    return LayerRead(
        id=row.id, position=row.position, name=row.name, kind=row.kind, every=row.every,
        handoff_weekday=row.handoff_weekday, handoff_time=row.handoff_time, rotation_start=row.rotation_start,
        participants=row.participant_ids, restriction=restriction,
    )


def schedule_read(row: Schedule) -> ScheduleRead:
    base = row.layers[0]
    return ScheduleRead(
        id=row.id, name=row.name, timezone=row.timezone, layers=[layer_read(layer) for layer in row.layers],
        handoff_weekday=base.handoff_weekday, handoff_time=base.handoff_time, rotation_start=base.rotation_start,
        participants=base.participant_ids, created_at=row.created_at,
    )


def override_read(row: ScheduleOverride) -> OverrideRead:
    return OverrideRead(
        id=row.id, schedule_id=row.schedule_id, user_id=row.user_id, starts_at=row.starts_at, ends_at=row.ends_at,
        created_at=row.created_at,
    )


def _participants(row: Schedule, ids: list[int]) -> list[ScheduleParticipant]:
    """The same user may take several turns of a rotation."""
    return [ScheduleParticipant(schedule_id=row.id, position=i, user_id=u) for i, u in enumerate(ids)]


def _layer(row: Schedule, position: int, body: LayerIn) -> ScheduleLayer:
    r = body.restriction
    return ScheduleLayer(
        schedule_id=row.id, position=position, name=body.name, kind=body.kind.value, every=body.every,
        handoff_weekday=body.handoff_weekday, handoff_time=body.handoff_time, rotation_start=body.rotation_start,
        restrict_weekdays=r.weekdays if r else None, restrict_start=r.start if r else None,
        restrict_end=r.end if r else None, participants=_participants(row, body.participants),
    )


def check_participants(session: Session, layers: list[LayerIn], field: str) -> None:
    """422 naming each participant id (`body.layers.1.participants.0`) that is not a user."""
    problems = []
    for i, layer in enumerate(layers):
        at = f"{field}.{i}.participants" if field == "body.layers" else "body.participants"
        problems += unknown_ids(session, User, layer.participants, at, "user")
    if problems:
        raise invalid(problems)


def save_schedule(session: Session, row: Schedule) -> Schedule:
    save_unique(session, row, Schedule.name, f"a schedule named {row.name!r} exists")
    return row


def create_schedule(*, session: Session, body: ScheduleCreate) -> Schedule:
    layers = body.layer_list()
    check_participants(session, layers, "body.layers" if body.layers is not None else "body")
    row = Schedule(name=body.name, timezone=body.timezone)
    with session.no_autoflush:
        if session.scalar(select(Schedule.id).where(Schedule.name == body.name)) is not None:
            raise ApiError(409, "conflict", f"a schedule named {body.name!r} exists")
    session.add(row)
    session.flush()  # its id, for the participants' schedule_id
    row.layers = [_layer(row, i, layer) for i, layer in enumerate(layers)]
    return save_schedule(session, row)


def update_schedule(*, session: Session, schedule_id: int, body: ScheduleUpdate) -> Schedule:
    """Takes effect at once, for running incidents too: on-call is looked up when each step runs."""
    row = get_or_404(session, Schedule, schedule_id, "schedule")
    changes = body.model_dump(exclude_unset=True)
    if "layers" in changes:
        check_participants(session, body.layers or [], "body.layers")
        changes.pop("layers")
        row.layers = []
        session.flush()  # the old layers go before the new ones take their positions
        row.layers = [_layer(row, i, layer) for i, layer in enumerate(body.layers or [])]
    base = row.layers[0]
    if "participants" in changes:
        ids = changes.pop("participants")
        problems = unknown_ids(session, User, ids, "body.participants", "user")
        if problems:
            raise invalid(problems)
        base.participants = _participants(row, ids)
    for name in ("handoff_weekday", "handoff_time", "rotation_start"):
        if name in changes:
            setattr(base, name, changes.pop(name))
    for name, value in changes.items():
        setattr(row, name, value)
    return save_schedule(session, row)


def delete_schedule(*, session: Session, schedule_id: int) -> None:
    """Its layers, overrides and calendar feeds go with it."""
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
    layer = row.layers[on.layer] if user and on and on.layer is not None else None
    overrides = overrides_of(session, row.id, at, at + NEXT_HANDOFF_HORIZON)
    return OnCallRead(
        user=OnCallPerson(id=user.id, name=user.name, timezone=user.timezone) if user else None,
        source=on.source if user and on else None,
        layer=OnCallLayer(id=layer.id, position=layer.position, name=layer.name) if layer else None,
        at=at, next_handoff=next_change(layers_of(row), overrides, at, NEXT_HANDOFF_HORIZON),
    )
