"""Bodies of the webhooks, escalation-policies and escalation-routes endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, HttpUrl, StrictFloat, StrictInt, field_validator

from api.admin import Patch, not_null
from vigil.contracts import BodyId, Channel, Severity, TargetKind

MAX_WAIT = 7 * 24 * 3600
Multiplier = Annotated[StrictFloat, Field(gt=0, le=100)]


class WebhookCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    url: HttpUrl
    secret: str | None = Field(default=None, min_length=1, max_length=500,
                               description="Key of the HMAC-SHA256 signature header; never shown again.")


class WebhookUpdate(Patch):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    url: HttpUrl | None = None
    secret: str | None = Field(default=None, min_length=1, max_length=500, description="null removes it.")

    _not_null = field_validator("name", "url")(not_null)


class WebhookRead(BaseModel):
    id: int
    name: str
    url: str
    has_secret: bool
    created_at: datetime


class TargetIn(BaseModel):
    kind: Literal[TargetKind.user, TargetKind.group, TargetKind.schedule, TargetKind.webhook]
    id: BodyId


class StepIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    channels: list[Channel] = Field(min_length=1, max_length=4, description="Every one that fits each recipient.")
    targets: list[TargetIn] = Field(min_length=1, max_length=50)
    wait_seconds: StrictInt = Field(default=300, ge=0, le=MAX_WAIT, description="Before the next step.")

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


class PolicyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=1, max_length=20)
    repeat: StrictInt = Field(default=0, ge=0, le=100, description="How many more times the steps run.")
    manager: StepIn | None = Field(default=None, description="Runs once, after the last step of the last round.")
    ack_timeout_seconds: StrictInt = Field(default=1800, ge=0, le=MAX_WAIT, description="0: an ack never times out.")
    ivr_attempts: StrictInt = Field(default=3, ge=1, le=10, description="Calls per IVR page while unanswered.")
    ivr_retry_seconds: StrictInt = Field(default=120, ge=0, le=3600)
    severity_multipliers: dict[Severity, Multiplier] = Field(
        default_factory=dict, description="Every wait of an incident of that severity is multiplied (e.g. 0.5).")


class PolicyUpdate(Patch):
    """Only the fields given change (`steps` replaces every step; `manager: null` removes it). Running
    incidents keep the policy they froze."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    steps: list[StepIn] | None = Field(default=None, min_length=1, max_length=20)
    repeat: StrictInt | None = Field(default=None, ge=0, le=100)
    manager: StepIn | None = None
    ack_timeout_seconds: StrictInt | None = Field(default=None, ge=0, le=MAX_WAIT)
    ivr_attempts: StrictInt | None = Field(default=None, ge=1, le=10)
    ivr_retry_seconds: StrictInt | None = Field(default=None, ge=0, le=3600)
    severity_multipliers: dict[Severity, Multiplier] | None = None

    _not_null = field_validator(
        "name", "steps", "repeat", "ack_timeout_seconds", "ivr_attempts", "ivr_retry_seconds", "severity_multipliers"
    )(not_null)


class TargetRead(BaseModel):
    kind: TargetKind
    id: int
    name: str


class StepRead(BaseModel):
    name: str
    channels: list[Channel]
    targets: list[TargetRead]
    wait_seconds: int


class PolicyRead(BaseModel):
    id: int
    name: str
    steps: list[StepRead]
    repeat: int
    manager: StepRead | None
    ack_timeout_seconds: int
    ivr_attempts: int
    ivr_retry_seconds: int
    severity_multipliers: dict[Severity, float]
    created_at: datetime
    updated_at: datetime


class PreviewRequest(BaseModel):
    severity: Severity
    start: AwareDatetime | None = Field(default=None, description="Default: now.")


class RouteIn(BaseModel):
    service: str = Field(min_length=1, max_length=200, description="The incident's service, or `*` for any.")
    severities: list[Severity] = Field(default_factory=list, description="Empty: every severity.")
    policy_id: BodyId


class RouteRead(RouteIn):
    position: int
    policy_name: str
