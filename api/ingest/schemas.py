"""Request and response bodies of the ingestion endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, ValidationError, model_validator,
)

from vigil.ingest.fit import clean_tree


class SenderBody(BaseModel):
    """A body from an alert sender. JSON admits lone UTF-16 surrogates, which UTF-8, pydantic and the
    database do not: they become U+FFFD before validation, so the alert is kept rather than refused."""

    @model_validator(mode="wrap")
    @classmethod
    def _clean(cls, data: Any, handler: ModelWrapValidatorHandler[SenderBody]) -> SenderBody:
        try:
            return handler(data)
        except ValidationError as err:  # the hot path stays a plain validation
            if not any(e["type"] == "string_unicode" for e in err.errors()):
                raise
        return handler(clean_tree(data))


class PagerDutyPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=255)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: datetime | None = None
    component: str | None = Field(default=None, max_length=255)
    group: str | None = Field(default=None, max_length=255)
    class_: str | None = Field(default=None, alias="class", max_length=255)
    custom_details: dict[str, Any] | str | None = None


class PagerDutyEvent(SenderBody):
    """PagerDuty Events API v2 body; `routing_key` is a Vigil integration key."""

    model_config = ConfigDict(extra="allow")

    routing_key: str = Field(min_length=1, max_length=200)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: PagerDutyPayload | None = None
    client: str | None = None
    client_url: str | None = None

    @model_validator(mode="after")
    def _check_action(self) -> PagerDutyEvent:
        if self.event_action == "trigger" and self.payload is None:
            raise ValueError("payload is required for event_action=trigger")
        if self.event_action != "trigger" and not self.dedup_key:
            raise ValueError(f"dedup_key is required for event_action={self.event_action}")
        return self


class PagerDutyResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str
    dedup_key: str


def _utc(value: datetime) -> datetime:
    """A time without a zone is UTC; one that UTC cannot hold (year 1 at +01:00) is refused, not a 500 later."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError("timestamp out of range") from err


UtcTimestamp = Annotated[datetime, AfterValidator(_utc)]


class PagerDutyLink(BaseModel):
    model_config = ConfigDict(extra="allow")

    href: str = Field(min_length=1, max_length=2048)
    text: str | None = Field(default=None, max_length=1024)


class ChangePayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    summary: str = Field(min_length=1, max_length=1024)
    source: str | None = Field(default=None, max_length=255)
    timestamp: UtcTimestamp | None = Field(default=None, description="When the change happened; default: received.")
    custom_details: dict[str, Any] | str | None = Field(
        default=None, description="`service` here names the change's service (else `source` does)."
    )


class PagerDutyChangeEvent(SenderBody):
    """PagerDuty change event (`POST /v2/change/enqueue`); `routing_key` is a Vigil integration key."""

    model_config = ConfigDict(extra="allow")

    routing_key: str = Field(min_length=1, max_length=200)
    payload: ChangePayload
    links: list[PagerDutyLink] = Field(default_factory=list, description="The first 20 are kept.")


class PagerDutyChangeResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str = "Change event processed"
    id: int = Field(description="Vigil's id of the stored change (what pdpyras' `submit()` returns).")


class PagerDutyError(BaseModel):
    """PagerDuty's own error body, which its clients print: on /v2/enqueue and /v2/change/enqueue only."""

    status: str = Field(examples=["invalid event"])
    message: str = Field(examples=["Event object is invalid"])
    errors: list[str] = Field(examples=[["payload.severity: Input should be 'critical', 'error', 'warning' or 'info'"]])


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str | None = None
    fingerprint: str | None = Field(default=None, max_length=200)


class AlertmanagerWebhook(SenderBody):
    """Alertmanager webhook v4 body."""

    model_config = ConfigDict(extra="allow")

    version: str = "4"
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


class IngestResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    alerts: int
    incidents: list[str]
    outcomes: dict[str, int]
