"""Pydantic contracts shared by workflows, activities and the API.

Every workflow, update and activity takes one of these models and returns one, so a
field can be added later without breaking running workflows (give it a default).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    warning = "warning"
    info = "info"

    @property
    def rank(self) -> int:
        """Lower is more urgent."""
        return list(Severity).index(self)


class IncidentStatus(StrEnum):
    triggered = "triggered"
    acknowledged = "acknowledged"
    resolved = "resolved"
    closed = "closed"


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    ivr = "ivr"


class ActorKind(StrEnum):
    user = "user"
    source = "source"
    timer = "timer"
    system = "system"


class Actor(BaseModel):
    """Who or what caused a transition: a user, the alert source, a timer."""

    kind: ActorKind
    name: str

    def label(self) -> str:
        return f"{self.kind.value}:{self.name}"


# Workflow and message names, shared by the workflow's decorators and by callers that address it by name.
INCIDENT_WORKFLOW = "IncidentWorkflow"
ADD_ALERTS = "add_alerts"
ACKNOWLEDGE = "acknowledge"

INCIDENT_ID_RE = re.compile(r"^(?:INC-)?([1-9][0-9]{0,17})$", re.IGNORECASE)


def workflow_id(number: int) -> str:
    """Incidents are addressed as INC-<n> everywhere: API, email, Temporal UI."""
    return f"INC-{number}"


def parse_incident_number(ref: str) -> int | None:
    """`INC-42` or `42` -> 42; anything else -> None."""
    m = INCIDENT_ID_RE.match(ref.strip())
    return int(m.group(1)) if m else None


class Alert(BaseModel):
    """One normalized alert from any source."""

    fingerprint: str
    status: AlertStatus = AlertStatus.firing
    summary: str
    severity: Severity
    service: str
    source: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    url: str | None = None
    # The source's own severity name, kept so per-integration severity maps can re-map it.
    raw_severity: str | None = None


class EscalationStep(BaseModel):
    """One rung of the ladder: notify `target` over `channel`, then wait before the next rung."""

    name: str
    channel: Channel
    target: str
    wait_seconds: int = Field(ge=0)

    @property
    def wait(self) -> timedelta:
        return timedelta(seconds=self.wait_seconds)


class EscalationPolicy(BaseModel):
    """A snapshot of the policy, frozen into the workflow at incident start."""

    name: str
    steps: list[EscalationStep]


class IncidentInput(BaseModel):
    """Start input of IncidentWorkflow. Alerts arrive through the add_alerts update."""

    number: int
    group_key: str
    service: str
    severity: Severity
    title: str
    integration_id: int
    integration_name: str = ""
    auto_resolve: bool = True
    hold_resolution_seconds: int = 0
    reopen_window_seconds: int = 300
    public_url: str = "http://127.0.0.1:8000"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    namespace: str = "default"
    # The batch that opened the incident (a plain start carries it; later batches arrive as updates).
    alerts: list[Alert] = Field(default_factory=list)
    # Carried across continue-as-new.
    state: IncidentState | None = None


class AddAlertsInput(BaseModel):
    """New fingerprints or status changes for one group, batched per request."""

    alerts: list[Alert]


class AddAlertsResult(BaseModel):
    number: int
    status: IncidentStatus
    new_alerts: int
    reopened: bool = False


class AcknowledgeInput(BaseModel):
    actor: Actor
    note: str | None = None


class ResolveInput(BaseModel):
    actor: Actor
    resolution: str = Field(min_length=1)


class TransitionResult(BaseModel):
    number: int
    status: IncidentStatus
    previous: IncidentStatus


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: str
    message: str


class AlertState(BaseModel):
    fingerprint: str
    status: AlertStatus
    summary: str
    severity: Severity


class IncidentState(BaseModel):
    """Full state of an incident, returned by the `state` query and carried across continue-as-new."""

    number: int
    status: IncidentStatus
    severity: Severity
    service: str
    title: str
    group_key: str
    created_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    alerts: dict[str, AlertState] = Field(default_factory=dict)
    current_step: str | None = None
    next_escalation_at: datetime | None = None
    ladder_round: int = 0
    # Next rung of the current round and when it is due (None: now). Carried across continue-as-new,
    # so a new run resumes the ladder mid-wait instead of restarting it.
    ladder_step: int = 0
    # Flap damping: every alert is resolved at the source; auto-resolve at this time unless one re-fires.
    resolve_due_at: datetime | None = None
    timeline_seq: int = 0
    policy: EscalationPolicy | None = None


class ReconcileInput(BaseModel):
    max_incidents: int = 200


class ReconcileResult(BaseModel):
    incidents: int = 0
    delivered: int = 0
    rerouted: int = 0
    released: int = 0


class IncidentResult(BaseModel):
    number: int
    status: IncidentStatus


# --- activity contracts -----------------------------------------------------------------


class LoadPolicyInput(BaseModel):
    service: str
    severity: Severity


class IncidentProjection(BaseModel):
    """The incident row as the workflow sees it, plus the timeline entries to append."""

    number: int
    status: IncidentStatus
    severity: Severity
    service: str
    title: str
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    timeline: list[TimelineEntry] = Field(default_factory=list)


class ReleaseGroupInput(BaseModel):
    number: int
    group_key: str


class NotifyInput(BaseModel):
    """One notification attempt of one ladder step."""

    number: int
    title: str
    severity: Severity
    service: str
    step: EscalationStep
    step_index: int
    ladder_round: int
    idempotency_key: str
    incident_url: str
    temporal_url: str
    alerts: list[AlertState] = Field(default_factory=list)


class NotifyResult(BaseModel):
    status: str
    provider_message_id: str | None = None
    error: str | None = None


IncidentInput.model_rebuild()
