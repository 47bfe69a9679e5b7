"""Bodies of the schedules, layers, overrides, on-call and calendar feed endpoints."""

from __future__ import annotations

from datetime import date, datetime
from pydantic import AwareDatetime, BaseModel, Field, StrictInt, ValidationInfo, field_validator, model_validator

from api.admin import Patch, TimeOfDay, TimeZoneName, not_null
from vigil.contracts import BodyId
from vigil.oncall import OnCallSource, RotationKind

# The flat fields of a single weekly rotation, from before layers: they still create and edit the base layer.
SINGLE_ROTATION = ("handoff_weekday", "handoff_time", "rotation_start", "participants")


class Restriction(BaseModel):
    """When the layer applies; outside it, the layers below decide."""

    weekdays: list[StrictInt] = Field(default_factory=list, max_length=7,
                                      description="0 = Monday … 6 = Sunday; empty: every day.")
    start: TimeOfDay | None = Field(default=None, description="HH:MM local; with `end`, a daily window.")
    end: TimeOfDay | None = Field(default=None, description="HH:MM local, exclusive; at or before `start`: past midnight.")

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _window(self) -> Restriction:
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end, or neither")
        if self.start is not None and self.start == self.end:
            raise ValueError("start and end must differ")
        if not self.weekdays and self.start is None:
            raise ValueError("restrict to some weekdays, to a daily window, or both")
        return self


class LayerIn(BaseModel):
    name: str = Field(default="", max_length=200)
    kind: RotationKind = Field(default=RotationKind.weekly, description="Hand off every `every` weeks, days or hours.")
    every: StrictInt = Field(default=1, ge=1, le=1000)
    handoff_weekday: StrictInt = Field(default=0, ge=0, le=6, description="Weekly only: 0 = Monday … 6 = Sunday.")
    handoff_time: TimeOfDay = Field(default="09:00", description="Local HH:MM of the handoffs (hourly: of the first).")
    rotation_start: date = Field(description="The first participant is on call from this day at handoff_time.")
    participants: list[BodyId] = Field(default_factory=list, max_length=200, description="User ids, in turn.")
    restriction: Restriction | None = None


class LayerRead(LayerIn):
    id: int
    position: int = Field(description="0 = the base layer; a higher layer wins where it has someone.")


class ScheduleCreate(BaseModel):
    """Either `layers`, or the flat fields of one weekly rotation (which make the one layer)."""

    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZoneName = Field(description="IANA name; handoffs happen at local wall time, DST included.")
    layers: list[LayerIn] | None = Field(default=None, min_length=1, max_length=20,
                                         description="Lowest first: the last layer with someone wins.")
    handoff_weekday: StrictInt = Field(default=0, ge=0, le=6, description="0 = Monday … 6 = Sunday.")
    handoff_time: TimeOfDay = Field(default="09:00", description="Local time of the handoff, HH:MM.")
    rotation_start: date | None = Field(default=None, description="Without `layers`: the weekly rotation's start.")
    participants: list[BodyId] = Field(default_factory=list, max_length=200, description="User ids, one a week, in order.")

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleCreate:
        flat = self.model_fields_set & set(SINGLE_ROTATION)
        if self.layers is not None and flat:
            raise ValueError(f"give layers, or the fields of one weekly rotation ({', '.join(sorted(flat))}), not both")
        if self.layers is None and self.rotation_start is None:
            raise ValueError("give layers, or rotation_start (and the other fields of one weekly rotation)")
        return self

    def layer_list(self) -> list[LayerIn]:
        if self.layers is not None:
            return self.layers
        return [LayerIn(**self.model_dump(include=set(SINGLE_ROTATION)))]


class ScheduleUpdate(Patch):
    """`layers` replaces them all; the flat fields change the base layer."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimeZoneName | None = None
    layers: list[LayerIn] | None = Field(default=None, min_length=1, max_length=20)
    handoff_weekday: StrictInt | None = Field(default=None, ge=0, le=6)
    handoff_time: TimeOfDay | None = None
    rotation_start: date | None = None
    participants: list[BodyId] | None = Field(default=None, max_length=200, description="Replaces the whole list.")

    _not_null = field_validator(
        "name", "timezone", "layers", "handoff_weekday", "handoff_time", "rotation_start", "participants"
    )(not_null)

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleUpdate:
        flat = self.model_fields_set & set(SINGLE_ROTATION)
        if "layers" in self.model_fields_set and flat:
            raise ValueError(f"give layers, or base-layer fields ({', '.join(sorted(flat))}), not both")
        return self


class ScheduleRead(BaseModel):
    id: int
    name: str
    timezone: str
    layers: list[LayerRead]
    # The base layer's, as the single-rotation API had them.
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


class OnCallLayer(BaseModel):
    id: int
    position: int
    name: str


class OnCallRead(BaseModel):
    user: OnCallPerson | None
    source: OnCallSource | None = Field(description="`override`, `rotation`, or null when nobody is on call.")
    layer: OnCallLayer | None = Field(default=None, description="The layer that decided (source `rotation`).")
    at: datetime
    next_handoff: datetime | None = Field(
        description="When someone else (or nobody) is next on call after `at`, within a year."
    )


class FeedCreate(BaseModel):
    """A feed of one schedule's shifts, or of one user's shifts on every schedule."""

    schedule_id: BodyId | None = None
    user_id: BodyId | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> FeedCreate:
        if (self.schedule_id is None) == (self.user_id is None):
            raise ValueError("give schedule_id or user_id (one of them)")
        return self


class FeedRead(BaseModel):
    id: int
    schedule_id: int | None
    user_id: int | None
    owner_id: int | None
    prefix: str = Field(description="The start of the token, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None


class FeedCreated(FeedRead):
    token: str = Field(description="Shown only now; stored as a hash.")
    url: str = Field(description="The secret URL a calendar subscribes to.")

