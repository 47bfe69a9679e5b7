"""/api/v1/schedules (admin): layers of rotations, their overrides, and who is on call (viewer+).

Each schedule has a handoff timer in Temporal (`vigil-handoff-<id>`, client/handoffs.py): every change nudges it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import ADMIN_ERRORS, get_or_404
from api.deps import Admin, SessionDep, StateDep, Viewer
from api.errors import ERROR_RESPONSES
from api.schedules import service
from api.schedules.schemas import OnCallRead, OverrideCreate, OverrideRead, ScheduleCreate, ScheduleRead, ScheduleUpdate
from client.handoffs import HandoffClient
from vigil.contracts import Id
from vigil.models import Schedule, utcnow

T = TypeVar("T")
router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])


def _handoffs(state: StateDep) -> HandoffClient:
    return HandoffClient(state.settings, state.connection.get)


async def _db(state: StateDep, work: Callable[[Session], T]) -> T:
    """DB work off the event loop, in its own session, before the timer is nudged."""
    def run() -> T:
        with state.sessions() as session:
            return work(session)

    return await asyncio.to_thread(run)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ScheduleRead, responses=ADMIN_ERRORS)
async def create_schedule(body: ScheduleCreate, _user: Admin, state: StateDep) -> ScheduleRead:
    """`layers` (lowest first; the last one with someone wins), or one weekly rotation: one participant a week,
    in order, handing off at `handoff_weekday` `handoff_time` in `timezone`."""
    read = await _db(state, lambda s: service.schedule_read(service.create_schedule(session=s, body=body)))
    await _handoffs(state).start(read.id)
    return read


@router.get("", response_model=list[ScheduleRead], responses=ADMIN_ERRORS)
def list_schedules(_user: Admin, session: SessionDep) -> list[ScheduleRead]:
    return [service.schedule_read(r) for r in session.scalars(select(Schedule).order_by(Schedule.id))]


@router.get("/{schedule_id:int}", response_model=ScheduleRead, responses=ADMIN_ERRORS)
def get_schedule(schedule_id: Id, _user: Admin, session: SessionDep) -> ScheduleRead:
    return service.schedule_read(get_or_404(session, Schedule, schedule_id, "schedule"))


@router.patch("/{schedule_id:int}", response_model=ScheduleRead, responses=ADMIN_ERRORS)
async def update_schedule(
    schedule_id: Id, body: ScheduleUpdate, _user: Admin, state: StateDep,
) -> ScheduleRead:
    """Takes effect at once, running incidents included: on-call is looked up when each step runs. `layers`
    replaces them all; the flat fields change the base layer."""
    read = await _db(state, lambda s: service.schedule_read(
        service.update_schedule(session=s, schedule_id=schedule_id, body=body)))
    await _handoffs(state).reschedule(schedule_id)
    return read


@router.delete("/{schedule_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
async def delete_schedule(schedule_id: Id, _user: Admin, state: StateDep) -> None:
    """409 naming the escalation policies that still target the schedule; its overrides and feeds go with it."""
    await _db(state, lambda s: service.delete_schedule(session=s, schedule_id=schedule_id))
    await _handoffs(state).reschedule(schedule_id)  # the timer finds the schedule gone and ends


@router.post("/{schedule_id:int}/overrides", status_code=status.HTTP_201_CREATED, response_model=OverrideRead,
             responses=ADMIN_ERRORS)
async def create_override(
    schedule_id: Id, body: OverrideCreate, _user: Admin, state: StateDep,
) -> OverrideRead:
    """`user_id` is on call from `starts_at` until `ends_at` (exclusive); the newest override wins an overlap."""
    read = await _db(state, lambda s: service.override_read(
        service.create_override(session=s, schedule_id=schedule_id, body=body)))
    await _handoffs(state).reschedule(schedule_id)
    return read


@router.get("/{schedule_id:int}/overrides", response_model=list[OverrideRead], responses=ADMIN_ERRORS)
def list_overrides(schedule_id: Id, _user: Admin, session: SessionDep) -> list[OverrideRead]:
    """By start."""
    return [service.override_read(r) for r in service.list_overrides(session=session, schedule_id=schedule_id)]


@router.delete("/{schedule_id:int}/overrides/{override_id:int}", status_code=status.HTTP_204_NO_CONTENT,
               responses=ADMIN_ERRORS)
async def delete_override(schedule_id: Id, override_id: Id, _user: Admin, state: StateDep) -> None:
    await _db(state, lambda s: service.delete_override(session=s, schedule_id=schedule_id, override_id=override_id))
    await _handoffs(state).reschedule(schedule_id)


@router.get("/{schedule_id:int}/oncall", response_model=OnCallRead,
            responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)})
def oncall(
    schedule_id: Id, _user: Viewer, session: SessionDep,
    at: Annotated[AwareDatetime | None, Query(description="ISO-8601 with an offset; default now.")] = None,
) -> OnCallRead:
    """Who is on call at `at`, and what decided: an override covering it, else the highest layer with someone.
    Names only, no addresses."""
    return service.oncall_read(session=session, schedule_id=schedule_id, at=at or utcnow())
