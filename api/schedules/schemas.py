"""Bodies of the schedules, overrides and on-call endpoints."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import AwareDatetime, BaseModel, Field, StrictInt, ValidationInfo, field_validator

from api.admin import Patch, TimeOfDay, TimeZoneName, not_null
from vigil.contracts import BodyId
from vigil.oncall import OnCallSource


class ScheduleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZoneName = Field(description="IANA name; handoffs happen at local wall time, DST included.")
    handoff_weekday: StrictInt = Field(default=0, ge=0, le=6, description="0 = Monday … 6 = Sunday.")
    handoff_time: TimeOfDay = Field(default="09:00", description="Local time of the handoff, HH:MM.")
    rotation_start: date = Field(description="The first participant is on call from this day at handoff_time.")
    participants: list[BodyId] = Field(default_factory=list, max_length=200, description="User ids, one a week, in order.")


class ScheduleUpdate(Patch):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimeZoneName | None = None
    handoff_weekday: StrictInt | None = Field(default=None, ge=0, le=6)
    handoff_time: TimeOfDay | None = None
    rotation_start: date | None = None
    participants: list[BodyId] | None = Field(default=None, max_length=200, description="Replaces the whole list.")

    _not_null = field_validator(
        "name", "timezone", "handoff_weekday", "handoff_time", "rotation_start", "participants"
    )(not_null)


class ScheduleRead(BaseModel):
    id: int
    name: str
    timezone: str
    handoff_weekday: int
    handoff_time: str
    rotation_start: date
    participants: list[int]
    created_at: datetime


class OverrideCreate(BaseModel):
    user_id: BodyId
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="Exclusive.")

    @field_validator("ends_at")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("starts_at")
        if start is not None and value <= start:
            raise ValueError("ends_at must be after starts_at")
        return value


class OverrideRead(BaseModel):
    id: int
    schedule_id: int
    user_id: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime


class OnCallPerson(BaseModel):
    id: int
    name: str
    timezone: str


class OnCallRead(BaseModel):
    user: OnCallPerson | None
    source: OnCallSource | None = Field(description="`override`, `rotation`, or null when nobody is on call.")
    at: datetime
    next_handoff: datetime | None = Field(description="The rotation's next handoff after `at`.")
