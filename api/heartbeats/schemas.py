"""Bodies of the heartbeat-monitor endpoints."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from api.admin import Patch, not_null
from vigil.contracts import Severity

# Cron's granularity is a minute; a monthly job needs 31 days.
MIN_INTERVAL, MAX_INTERVAL = 60, 90 * 86400
MAX_GRACE = 7 * 86400


class MonitorStatus(StrEnum):
    waiting = "waiting"  # no check-in yet
    up = "up"
    down = "down"  # missed: its alert fires until the next check-in
    paused = "paused"


class HeartbeatCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Unique, e.g. `nightly-backup`.")
    service: str = Field(min_length=1, max_length=200, description="The service a missed check-in opens an incident for.")
    severity: Severity = Severity.critical
    interval_seconds: int = Field(ge=MIN_INTERVAL, le=MAX_INTERVAL, description="How often the job checks in.")
    grace_seconds: int = Field(
        default=300, ge=0, le=MAX_GRACE, description="How late a check-in may be before the monitor is missed."
    )


class HeartbeatUpdate(Patch):
    """Only the fields given change. The deadline is counted from the last check-in with the new period."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    service: str | None = Field(default=None, min_length=1, max_length=200)
    severity: Severity | None = None
    interval_seconds: int | None = Field(default=None, ge=MIN_INTERVAL, le=MAX_INTERVAL)
    grace_seconds: int | None = Field(default=None, ge=0, le=MAX_GRACE)
    paused: bool | None = Field(default=None, description="Paused: no deadline; resuming starts a whole period.")

    _not_null = field_validator(
        "name", "service", "severity", "interval_seconds", "grace_seconds", "paused"
    )(not_null)


class HeartbeatRead(BaseModel):
    id: int
    name: str
    service: str
    severity: Severity
    interval_seconds: int
    grace_seconds: int
    paused: bool
    status: MonitorStatus
    token_prefix: str = Field(description="Enough of the check-in token to recognise it; the token is shown once.")
    last_check_in_at: datetime | None
    down_since: datetime | None = Field(description="When the current miss opened its alert.")
    incident: str | None = Field(description="The incident the last miss opened or joined (`INC-<n>`).")
    created_by: str
    created_at: datetime


class HeartbeatCreated(HeartbeatRead):
    token: str = Field(description="The check-in token. Shown only in this response: store it now.")
    check_in_url: str = Field(description="POST or GET it to check in (the token is in the path).")


class CheckInResult(BaseModel):
    status: str = Field(description="`ok`")
    monitor: str = Field(description="The monitor's name.")
