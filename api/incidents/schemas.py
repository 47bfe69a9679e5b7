"""Response and request bodies of the incident endpoints."""

from __future__ import annotations

from datetime import datetime

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, computed_field, model_validator

from api.incidents.people import display_actor
from vigil.alert_context import context_of
from vigil.contracts import IncidentStatus, Severity
from vigil.urls import mask_url
from vigil.contracts import incident_ref


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


Text = Annotated[str, Field(min_length=1, max_length=10000), AfterValidator(_not_blank)]


# `status` filter values: an incident status, or `open`: not closed (nor ended), as the vigil CLI says it;
# a resolved incident still reopens on a re-fire and waits for its postmortem.
OPEN = "open"
OPEN_STATUSES = tuple(s.value for s in (IncidentStatus.triggered, IncidentStatus.acknowledged, IncidentStatus.resolved))
StatusFilter = Literal["triggered", "acknowledged", "resolved", "closed", "ended", "open"]
assert set(get_args(StatusFilter)) == {*(s.value for s in IncidentStatus), OPEN}  # kept in step with the enum


class AcknowledgeRequest(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


class ResolveRequest(BaseModel):
    resolution: Text = Field(description="What fixed it; required.")


class NoteRequest(BaseModel):
    body: Text = Field(description="Added to the timeline (and to Jira as a comment).")


class AssignRequest(BaseModel):
    assignee: str | None = Field(max_length=320, description="The owner's email (mapped to a Jira account); null unassigns.")


class SnoozeRequest(BaseModel):
    minutes: StrictInt = Field(gt=0, le=7 * 24 * 60, description="Re-trigger after this many minutes unless resolved.")
    note: str = Field(default="", max_length=4000)


class LinkRead(BaseModel):
    href: str
    text: str


class ImageRead(BaseModel):
    src: str
    href: str
    alt: str


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
    runbook_url: str | None = Field(
        default=None, description="Annotation `runbook_url` (or `runbook`), else a PagerDuty link named runbook."
    )
    description: str | None = Field(default=None, description="Annotation `description`.")
    source_url: str | None = Field(default=None, description="Alertmanager's `generatorURL`, PagerDuty's `client_url`.")
    links: list[LinkRead] = Field(default_factory=list, description="PagerDuty `links` (a runbook link is `runbook_url`).")
    images: list[ImageRead] = Field(default_factory=list, description="PagerDuty `images`.")
    details: dict[str, str] = Field(
        default_factory=dict, description="PagerDuty `custom_details` (nested values as JSON) or the other annotations."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        """A stored alert (incident or held) with its context read out of the annotations, URL and links."""
        if isinstance(data, dict):
            return data
        context = context_of(data)
        return {
            **{k: getattr(data, k) for k in ("fingerprint", "status", "summary", "severity", "service", "source",
                                             "labels", "first_seen", "last_seen", "count")},
            "runbook_url": context.runbook_url, "description": context.description, "source_url": context.source_url,
            "links": [{"href": x.href, "text": x.text} for x in context.links],
            "images": [{"src": x.image, "href": x.href, "alt": x.text} for x in context.images],
            "details": context.details,
        }

    @classmethod
    def of(cls, row) -> AlertRead:  # noqa: ANN001
        return cls.model_validate(row)


class TimelineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    kind: str
    actor: str = Field(description="As recorded (`kind:name`, the workflow history's text), e.g. `source:alert source`.")
    message: str

    @computed_field(description="The actor for people: `alert source`, `rita@test`, `Jane Doe (Jira)`.")
    @property
    def actor_name(self) -> str:
        return display_actor(self.actor) or self.actor


class NotificationRead(BaseModel):
    """One send attempt: a page retried after an error shows once per attempt."""

    model_config = ConfigDict(from_attributes=True)

    incident: str
    step: str
    channel: str
    recipient: str | None
    target: str
    provider: str
    status: str = Field(description="sending | sent | failed | cancelled | lost (its worker died mid-send; a "
                        "later attempt with the same idempotency key retried it)")
    attempt: int
    idempotency_key: str
    provider_message_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    latency_ms: int | None = Field(description="From the attempt's start to the provider's answer.")
    receipt: str | None = Field(description="The provider's later word: delivered | failed | ivr_answered | ivr_no_answer")
    receipt_at: datetime | None
    receipt_error: str | None

    @classmethod
    def of(cls, row) -> NotificationRead:  # noqa: ANN001
        latency = int((row.finished_at - row.started_at).total_seconds() * 1000) if row.finished_at else None
        # A webhook URL is a credential (Slack's are): the log, which viewers read, shows its host only; admins
        # read the whole URL from /api/v1/webhooks.
        target = mask_url(row.target) if row.channel == "webhook" else row.target
        return cls.model_validate(
            {**{k: getattr(row, k) for k in cls.model_fields if hasattr(row, k)},
             "incident": incident_ref(row.incident_number), "latency_ms": latency, "target": target}
        )


class NotificationList(BaseModel):
    items: list[NotificationRead]
    total: int
    limit: int
    offset: int


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
    acknowledged_by: str | None = Field(description="As recorded (`user:rita@test`); an address is masked.")
    acknowledged_by_name: str | None = Field(
        default=None, description="Who acknowledged, for people; in one incident's view, responders and admins see "
        "the address that acknowledged from an email link, SMS reply or IVR keypress in full.",
    )
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="As recorded (`source:alert source`).")
    resolved_by_name: str | None = Field(default=None, description="Who resolved, for people (`alert source`).")
    assignee: str | None = Field(default=None, description="Who owns the incident (`POST …/assign`).")
    resolution: str | None
    closed_at: datetime | None
    reopen_count: int
    jira_key: str | None
    temporal_url: str
    workflow_status: str | None = Field(
        description="Set when status is `ended`: how the incident's workflow ended outside Vigil "
        "(terminated | canceled | failed | timed_out). Nothing pages for such an incident."
    )
    ended_at: datetime | None = Field(description="When Vigil found the workflow ended (status `ended`).")


class ChangeRead(BaseModel):
    """A change event of the incident's service (`POST /v2/change/enqueue`): a deploy, a config change."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When it happened: the sender's `payload.timestamp`, else when Vigil got it.")
    service: str
    summary: str
    source: str | None
    custom_details: dict
    links: list[dict[str, str]] = Field(description="`{href, text?}`, the sender's first 20.")
    received_at: datetime


class IncidentDetail(IncidentSummary):
    retriggers_at: datetime | None = Field(
        default=None, description="Acknowledged: when it re-triggers (the policy's ack timeout or a snooze's end) "
        "unless resolved; from the workflow's state (null if Temporal does not answer).",
    )
    snoozed_until: datetime | None = Field(default=None, description="Set while a snooze holds it quiet.")
    alerts: list[AlertRead]
    timeline: list[TimelineRead] = Field(description="The incident's events by seq; changes of its service made "
                                         "while it was open are merged in by time (kind `change`, seq 0).")
    notifications: list[NotificationRead]
    recent_changes: list[ChangeRead] = Field(description="Its service's changes from 24 h before it opened until "
                                             "now, newest first, at most 20.")


class IncidentList(BaseModel):
    items: list[IncidentSummary]
    total: int
    limit: int
    offset: int


class JiraSyncRead(BaseModel):
    """One Jira call (out) or webhook event (in)."""

    model_config = ConfigDict(from_attributes=True)

    direction: str = Field(description="out: Vigil -> Jira; in: a Jira webhook")
    operation: str
    jira_key: str | None
    status: str = Field(description="out: ok | skipped | failed (not retried) | retrying; in: applied | ignored")
    error: str | None
    latency_ms: int | None
    attempt: int
    created_at: datetime


class JiraSync(BaseModel):
    incident: str
    jira_key: str | None
    issue_url: str | None
    log: list[JiraSyncRead]
