"""Response and request bodies of the incident endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vigil.contracts import IncidentStatus, Severity


class AcknowledgeRequest(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


class ResolveRequest(BaseModel):
    resolution: str = Field(min_length=1, max_length=10000, description="What fixed it; required.")

    @field_validator("resolution")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("resolution must not be blank")
        return value.strip()


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    fingerprint: str
    status: str
    summary: str
    severity: str
    service: str
    source: str
    labels: dict[str, str]
    first_seen: datetime
    last_seen: datetime
    count: int


class TimelineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    kind: str
    actor: str
    message: str


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: str
    channel: str
    target: str
    provider: str
    status: str
    attempt: int
    idempotency_key: str
    provider_message_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class IncidentSummary(BaseModel):
    id: str
    number: int
    status: IncidentStatus
    severity: Severity
    service: str
    title: str
    group_key: str
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    closed_at: datetime | None
    reopen_count: int
    jira_key: str | None
    temporal_url: str


class IncidentDetail(IncidentSummary):
    alerts: list[AlertRead]
    timeline: list[TimelineRead]
    notifications: list[NotificationRead]


class IncidentList(BaseModel):
    items: list[IncidentSummary]
    total: int
    limit: int
    offset: int
