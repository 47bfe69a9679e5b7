"""/api/v1/schedules (admin): weekly rotations, their overrides, and who is on call (viewer+)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime
from sqlalchemy import select

from api.admin import ADMIN_ERRORS, get_or_404
from api.deps import Admin, SessionDep, Viewer
from api.errors import ERROR_RESPONSES
from api.schedules import service
from api.schedules.schemas import OnCallRead, OverrideCreate, OverrideRead, ScheduleCreate, ScheduleRead, ScheduleUpdate
from vigil.contracts import Id
from vigil.models import Schedule, utcnow

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ScheduleRead, responses=ADMIN_ERRORS)
def create_schedule(body: ScheduleCreate, _user: Admin, session: SessionDep) -> ScheduleRead:
    """One participant a week, in order, handing off at `handoff_weekday` `handoff_time` in `timezone`."""
    return service.schedule_read(service.create_schedule(session=session, body=body))


@router.get("", response_model=list[ScheduleRead], responses=ADMIN_ERRORS)
def list_schedules(_user: Admin, session: SessionDep) -> list[ScheduleRead]:
    return [service.schedule_read(r) for r in session.scalars(select(Schedule).order_by(Schedule.id))]


@router.get("/{schedule_id:int}", response_model=ScheduleRead, responses=ADMIN_ERRORS)
def get_schedule(schedule_id: Id, _user: Admin, session: SessionDep) -> ScheduleRead:
    return service.schedule_read(get_or_404(session, Schedule, schedule_id, "schedule"))


@router.patch("/{schedule_id:int}", response_model=ScheduleRead, responses=ADMIN_ERRORS)
def update_schedule(schedule_id: Id, body: ScheduleUpdate, _user: Admin, session: SessionDep) -> ScheduleRead:
    """Takes effect at once, running incidents included: on-call is looked up when each step runs."""
    return service.schedule_read(service.update_schedule(session=session, schedule_id=schedule_id, body=body))


@router.delete("/{schedule_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_schedule(schedule_id: Id, _user: Admin, session: SessionDep) -> None:
    """409 naming the escalation policies that still target the schedule; its overrides go with it."""
    service.delete_schedule(session=session, schedule_id=schedule_id)


@router.post("/{schedule_id:int}/overrides", status_code=status.HTTP_201_CREATED, response_model=OverrideRead,
             responses=ADMIN_ERRORS)
def create_override(schedule_id: Id, body: OverrideCreate, _user: Admin, session: SessionDep) -> OverrideRead:
    """`user_id` is on call from `starts_at` until `ends_at` (exclusive); the newest override wins an overlap."""
    return service.override_read(service.create_override(session=session, schedule_id=schedule_id, body=body))


@router.get("/{schedule_id:int}/overrides", response_model=list[OverrideRead], responses=ADMIN_ERRORS)
def list_overrides(schedule_id: Id, _user: Admin, session: SessionDep) -> list[OverrideRead]:
    """By start."""
    return [service.override_read(r) for r in service.list_overrides(session=session, schedule_id=schedule_id)]


@router.delete("/{schedule_id:int}/overrides/{override_id:int}", status_code=status.HTTP_204_NO_CONTENT,
               responses=ADMIN_ERRORS)
def delete_override(schedule_id: Id, override_id: Id, _user: Admin, session: SessionDep) -> None:
    service.delete_override(session=session, schedule_id=schedule_id, override_id=override_id)


@router.get("/{schedule_id:int}/oncall", response_model=OnCallRead,
            responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)})
def oncall(
    schedule_id: Id, _user: Viewer, session: SessionDep,
    at: Annotated[AwareDatetime | None, Query(description="ISO-8601 with an offset; default now.")] = None,
) -> OnCallRead:
    """Who is on call at `at`: an override covering it, else the rotation. Names only, no addresses."""
    return service.oncall_read(session=session, schedule_id=schedule_id, at=at or utcnow())
