"""Pydantic contracts shared by workflows, activities and the API.

Every workflow, update and activity takes one of these models and returns one, so a
field can be added later without breaking running workflows (give it a default).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AliasChoices, BaseModel, Field, Strict


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
    # Set only by the ended-workflow check, never by the workflow: its workflow was terminated, timed out,
    # failed or cancelled outside Vigil, and nothing pages for it any more.
    ended = "ended"


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    ivr = "ivr"
    webhook = "webhook"


PERSON_CHANNELS = (Channel.email, Channel.sms, Channel.ivr)


class ActorKind(StrEnum):
    user = "user"
    source = "source"
    timer = "timer"
    system = "system"
    jira = "jira"  # a person acting in Jira (webhook): never synced back to Jira


class Actor(BaseModel):
    """Who or what caused a transition: a user, the alert source, a timer."""

    kind: ActorKind
    name: str

    def label(self) -> str:
        return f"{self.kind.value}:{self.name}"


# Workflow and message names, shared by the workflow's decorators and by callers that address it by name.
INCIDENT_WORKFLOW = "IncidentWorkflow"
# Temporal task priority keys (1 runs first; 3 is the server's default for work that sets none). An incident's
# workflow tasks and its pages run ahead of bookkeeping (projections, Jira, evidence, reminders), so a backlog of
# those never delays a page: docs/deploy.md, "Pages first".
PAGE_PRIORITY_KEY = 1
BACKGROUND_PRIORITY_KEY = 4
ADD_ALERTS = "add_alerts"
ACKNOWLEDGE = "acknowledge"
SNOOZE = "snooze"
REOPEN = "reopen"
ADD_NOTE = "add_note"
ASSIGN = "assign"
RESOLVE = "resolve"
STATE_QUERY = "state"
JIRA_SYNC_WORKFLOW = "JiraSyncWorkflow"
JIRA_LINKED = "jira_linked"
DELIVERY_RECEIPT = "delivery_receipt"

# The RCA / postmortem stage.
CLOSE = "close"
COMPLETE_POSTMORTEM = "complete_postmortem"
WAIVE_POSTMORTEM = "waive_postmortem"
POSTMORTEM_EDITED = "postmortem_edited"
REFRESH_EVIDENCE = "refresh_evidence"

# Business refusals: the `ApplicationError.type` the incident workflow raises, which the client turns into its
# domain errors (TransitionRefused, IncidentClosed, ResolutionRequired). The strings are in recorded histories.
REFUSED_TRANSITION = "InvalidTransition"
REFUSED_CLOSED = "IncidentClosed"
REFUSED_NO_RESOLUTION = "ResolutionRequired"
REFUSED_POSTMORTEM = "PostmortemRequired"  # close before the required postmortem is complete (or waived)

# BIGINT and SQLite INTEGER are signed 64-bit: a larger value makes the driver raise OverflowError (a 500), so
# every id, offset and count that reaches the database is bounded at the door (422) by these types.
INT64_MAX = 2**63 - 1
Id = Annotated[int, Ge(1), Le(INT64_MAX)]
"""A row id in a path or query (strings there, so parsed)."""
Offset = Annotated[int, Ge(0), Le(INT64_MAX)]
"""A paging offset in a query."""
BodyId = Annotated[Id, Strict()]
"""A row id in a JSON body: strict, so `true` or `"7"` is refused rather than read as an id."""

INCIDENT_ID_RE = re.compile(r"^(?:INC-)?([1-9][0-9]{0,17})$", re.IGNORECASE)


def incident_ref(number: int) -> str:
    """The one spelling of an incident: INC-<n>, everywhere (API, email, Jira, Temporal UI, logs)."""
    return f"INC-{number}"


def workflow_id(number: int) -> str:
    """The incident's Temporal workflow id, which is its reference."""
    return incident_ref(number)


def jira_sync_workflow_id(number: int) -> str:
    """The workflow id of the incident's JiraSyncWorkflow."""
    return f"{incident_ref(number)}-jira"


def parse_incident_number(ref: str) -> int | None:
    """`INC-42` or `42` -> 42; anything else -> None."""
    m = INCIDENT_ID_RE.match(ref.strip())
    return int(m.group(1)) if m else None


class AlertLink(BaseModel):
    """A link or image the source attached to an alert (PagerDuty's `links` and `images`)."""

    href: str  # where it leads: the link, or an image's click target (its `src` when it has none)
    text: str = ""  # the link text, or an image's `alt`
    image: str | None = None  # an image's `src`; None for a link


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
    links: list[AlertLink] = Field(default_factory=list)


class LegacyStep(BaseModel):
    """One rung of the pre-policy fixed ladder: notify `target` over `channel`, then wait (replay only)."""

    name: str
    channel: Channel
    target: str
    wait_seconds: int = Field(ge=0)

    @property
    def wait(self) -> timedelta:
        return timedelta(seconds=self.wait_seconds)


class LegacyPolicy(BaseModel):
    """The fixed ladder of incidents started before escalation policies (replay only; see
    workflows/incident/legacy_ladder.py for when it can go)."""

    name: str
    steps: list[LegacyStep]


class TargetKind(StrEnum):
    user = "user"
    group = "group"  # a contact group: every member
    schedule = "schedule"  # whoever is on call when the step runs
    webhook = "webhook"  # an outgoing webhook (the `webhook` channel only)
    contact = "contact"  # a raw address from settings (the built-in default ladder)


class PolicyTarget(BaseModel):
    """Who a step pages. Resolved to recipients when the step runs, so a schedule pages whoever is on call then."""

    kind: TargetKind
    id: int | None = None  # users / contact_groups / schedules / webhooks row; None for `contact`
    name: str = ""  # for the UI and logs; never an address
    email: str | None = None  # `contact` only
    phone: str | None = None  # `contact` only


class PolicyStep(BaseModel):
    """One rung: every target over every channel that fits it, at once; then wait before the next rung."""

    name: str
    channels: list[Channel]
    targets: list[PolicyTarget]
    wait_seconds: int = Field(ge=0)  # already scaled by the policy's multiplier for the incident's severity

    @property
    def wait(self) -> timedelta:
        return timedelta(seconds=self.wait_seconds)


class FrozenPolicy(BaseModel):
    """The escalation policy as frozen into an incident at start: `steps`, repeated `repeat` more times, then
    `manager` once. Editing the policy afterwards changes only new incidents."""

    policy_id: int | None = None  # None: the built-in default ladder from settings
    name: str
    steps: list[PolicyStep]
    repeat: int = Field(default=0, ge=0)
    manager: PolicyStep | None = None
    ack_timeout_seconds: int = Field(default=1800, ge=0)  # 0: an ack never times out
    ivr_attempts: int = Field(default=3, ge=1)  # calls per IVR step when unanswered (Grafana OnCall #2622)
    ivr_retry_seconds: int = Field(default=120, ge=0)  # between unanswered calls


class Recipient(BaseModel):
    """A target resolved when its step runs: a person (email / phone) or a webhook."""

    kind: TargetKind  # user (also for group members and on-call), contact or webhook
    id: int | None = None
    name: str
    email: str | None = None
    phone: str | None = None
    url: str | None = None  # webhook only
    via: str = ""  # how it was reached: "group ops", "schedule primary (on call)"

    def address(self, channel: Channel) -> str | None:
        """Where `channel` reaches this recipient: the email, the URL (webhook) or the phone (SMS, IVR)."""
        return self.email if channel == Channel.email else self.url if channel == Channel.webhook else self.phone


class ResolveTargetsInput(BaseModel):
    targets: list[PolicyTarget]
    at: datetime


class ResolveTargetsResult(BaseModel):
    recipients: list[Recipient]
    unresolved: list[str] = Field(default_factory=list)  # e.g. "schedule primary: nobody on call"


class JiraTarget(BaseModel):
    """Jira sync of one incident, decided when it opens (None: Jira sync is off)."""

    project_key: str
    min_severity: Severity


class JiraOpKind(StrEnum):
    create = "create"
    transition = "transition"  # to the Jira transition mapped from `status`
    comment = "comment"
    assign = "assign"  # `body`: the assignee's email (None: unassign), mapped to a Jira account
    close = "close"  # the incident closed: nothing more will come
    attach_postmortem = "attach_postmortem"  # the completed postmortem's PDF, attached once (by file name)
    action_items = "action_items"  # each row of the completed postmortem's action items as a linked issue, once


class JiraOp(BaseModel):
    """One change for Jira, applied in order by the incident's JiraSyncWorkflow."""

    kind: JiraOpKind
    status: IncidentStatus | None = None
    body: str | None = None


class JiraIssueFields(BaseModel):
    """What the created issue says about the incident."""

    number: int
    title: str
    severity: Severity
    service: str
    incident_url: str
    temporal_url: str
    alerts: list[AlertState] = Field(default_factory=list)
    alert_count: int = 0  # all the incident's alerts; `alerts` lists the first DIGEST_ALERTS


class JiraSyncInput(BaseModel):
    """Start input of JiraSyncWorkflow (`INC-<n>-jira`); also carried across continue-as-new."""

    project_key: str
    issue: JiraIssueFields
    ops: list[JiraOp] = Field(default_factory=list)
    key: str | None = None
    closed: bool = False


class JiraCallInput(BaseModel):
    project_key: str
    issue: JiraIssueFields
    key: str | None
    op: JiraOp


class JiraCallResult(BaseModel):
    key: str | None = None
    outcome: str = "ok"  # ok | skipped
    detail: str = ""


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
    jira: JiraTarget | None = None
    # The escalation policy, frozen by the API in the transaction that created the incident row: the workflow
    # then pages without a `freeze_escalation_policy` activity first. None: the workflow freezes it itself.
    plan: FrozenPolicy | None = None
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


class ReopenInput(BaseModel):
    actor: Actor
    note: str = ""


class NoteInput(BaseModel):
    actor: Actor
    body: str = Field(min_length=1)


class AssignInput(BaseModel):
    actor: Actor
    assignee: str | None  # a display name (or email); None unassigns


class TransitionResult(BaseModel):
    number: int
    status: IncidentStatus
    previous: IncidentStatus
    # The incident as the update left it (what the `state` query answers, less `alerts`, `pages` and
    # `receipts_seen`: IncidentState.summary), when the workflow sends it: the API then answers a transition
    # from it instead of querying the workflow again.
    state: IncidentState | None = None


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


# An incident's workflow state crosses continue-as-new as one payload (2 MiB at most), so each alert it
# tracks is kept small and their number bounded: past MAX_TRACKED_ALERTS an incident only counts new alerts
# (the database keeps them all), and is no longer auto-resolved, since it cannot know they all resolved.
MAX_TRACKED_ALERTS = 4000
STATE_SUMMARY_CHARS = 120
STATE_KEY_CHARS = 64
# Pages and the Jira issue list the first alerts (firing first) and say how many there are in all.
DIGEST_ALERTS = 20


def alert_key(fingerprint: str) -> str:
    """How the workflow state names an alert: its fingerprint, or a hash of a long one."""
    if len(fingerprint) <= STATE_KEY_CHARS:
        return fingerprint
    return "#" + hashlib.sha256(fingerprint.encode()).hexdigest()[:40]


def tracked(alert: Alert) -> AlertState:
    """The small copy of an alert that the workflow state keeps."""
    key = alert_key(alert.fingerprint)
    return AlertState(
        fingerprint=key, status=alert.status, summary=alert.summary[:STATE_SUMMARY_CHARS], severity=alert.severity
    )


class PageStatus(StrEnum):
    sending = "sending"
    sent = "sent"  # accepted by the provider / SMTP server
    delivered = "delivered"  # receipt: delivered to the handset
    answered = "answered"  # IVR: the call was picked up
    unanswered = "unanswered"  # IVR: the call was not picked up (retried up to the policy's attempts)
    failed = "failed"
    cancelled = "cancelled"  # stopped by an ack / resolve

    @property
    def dead(self) -> bool:
        """This page can no longer reach anyone: the ladder need not wait for it."""
        return self in (PageStatus.failed, PageStatus.cancelled)


class PageState(BaseModel):
    """One (recipient, channel) page of one rung, as the workflow tracks it."""

    key: str  # idempotency key of the latest attempt (an IVR retry gets `/call<n>`)
    rung: int
    step: str
    channel: Channel
    recipient: str  # display name and masked address
    status: PageStatus = PageStatus.sending
    calls: int = 0


class ReceiptType(StrEnum):
    delivered = "delivered"
    failed = "failed"
    ivr_answered = "ivr_answered"
    ivr_no_answer = "ivr_no_answer"


class ReceiptInput(BaseModel):
    """A provider's delivery receipt for one notification (signal; deduplicated by event_id)."""

    event_id: str
    idempotency_key: str
    type: ReceiptType
    error: str | None = None


class SnoozeInput(BaseModel):
    actor: Actor
    seconds: int = Field(gt=0, le=7 * 24 * 3600)
    note: str = ""


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
    alerts: dict[str, AlertState] = Field(default_factory=dict)  # by alert_key(fingerprint)
    # Alerts past MAX_TRACKED_ALERTS: counted, not tracked one by one.
    untracked_alerts: int = 0
    current_step: str | None = None
    next_escalation_at: datetime | None = None
    ladder_round: int = 0
    # Next rung of the current round and when it is due (None: now). Carried across continue-as-new,
    # so a new run resumes the ladder mid-wait instead of restarting it.
    ladder_step: int = 0
    # Flap damping: every alert is resolved at the source; auto-resolve at this time unless one re-fires.
    resolve_due_at: datetime | None = None
    timeline_seq: int = 0
    policy: LegacyPolicy | None = None  # incidents started before escalation policies (replay only)
    plan: FrozenPolicy | None = None  # the escalation policy frozen at start
    # Acknowledged: re-trigger at this time (the policy's ack timeout, or the end of a snooze).
    retrigger_at: datetime | None = None
    # The current round's pages by page key, and the provider receipts already applied (dedup). Read under its
    # old name too: a run continued by a worker from before the rename hands its pages over as `deliveries`.
    pages: dict[str, PageState] = Field(
        default_factory=dict, validation_alias=AliasChoices("pages", "deliveries")
    )
    receipts_seen: list[str] = Field(default_factory=list)
    jira_started: bool = False  # the issue's create is queued (or done): later changes follow it
    assignee: str | None = None
    jira_key: str | None = None
    postmortem: PostmortemState | None = None  # opened at resolve (runs with the RCA stage)

    @property
    def alert_count(self) -> int:
        return len(self.alerts) + self.untracked_alerts

    def summary(self) -> IncidentState:
        """This state without its per-alert, per-page and receipt records, which can be large (thousands of
        alerts): small enough to answer every transition with (and to keep in its history event)."""
        return self.model_copy(update={"alerts": {}, "pages": {}, "receipts_seen": []})

    def alert_digest(self) -> list[AlertState]:
        """The first DIGEST_ALERTS alerts, firing first, for pages and the Jira issue."""
        ordered = sorted(self.alerts.values(), key=lambda a: a.status != AlertStatus.firing)
        return ordered[:DIGEST_ALERTS]


class ReconcileInput(BaseModel):
    max_incidents: int = 200


class ReconcilerInput(BaseModel):
    """The long-lived reconciler: a pass every `every_seconds`, in activities of `activity_seconds` each."""

    every_seconds: float = 10.0
    activity_seconds: float = 3600.0
    max_incidents: int = 200


class ReconcilerResult(BaseModel):
    """What one long activity's passes did, in all."""

    passes: int = 0
    failed_passes: int = 0
    delivered: int = 0
    rerouted: int = 0
    released: int = 0
    dead_lettered: int = 0
    ended: int = 0
    lost: int = 0


class ReconcileResult(BaseModel):
    incidents: int = 0
    delivered: int = 0
    rerouted: int = 0
    released: int = 0
    refused: int = 0
    dead_lettered: int = 0
    waiting: int = 0


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
    """One notification of one ladder step: `channel` to `recipient` (or, before policies, `step`)."""

    number: int
    title: str
    severity: Severity
    service: str
    step: LegacyStep | None = None  # incidents started before escalation policies
    step_name: str = ""
    channel: Channel | None = None
    recipient: Recipient | None = None
    call: int = 1  # IVR: which call of the step this is
    step_index: int
    ladder_round: int
    idempotency_key: str
    incident_url: str
    temporal_url: str
    alerts: list[AlertState] = Field(default_factory=list)
    alert_count: int = 0  # all the incident's alerts; `alerts` lists the first DIGEST_ALERTS

    @property
    def target_channel(self) -> Channel:
        return self.channel or self.step.channel  # type: ignore[union-attr]

    @property
    def address(self) -> str:
        """Where this notification goes: an email address, an E.164 number or a webhook URL."""
        if self.recipient is None:
            return self.step.target  # type: ignore[union-attr]
        return self.recipient.address(self.target_channel) or ""

    @property
    def label(self) -> str:
        return self.step_name or (self.step.name if self.step else "")


class NotifyResult(BaseModel):
    status: str
    provider_message_id: str | None = None
    error: str | None = None


class CancelRequestInput(BaseModel):
    workflow_id: str
    run_id: str


class CancelRequest(BaseModel):
    """Who asked Temporal to cancel a workflow, and why (from its WorkflowExecutionCancelRequested event)."""

    identity: str = ""
    reason: str = ""


class EndedCheckInput(BaseModel):
    max_incidents: int = 500


class EndedCheckResult(BaseModel):
    checked: int = 0
    ended: list[int] = Field(default_factory=list)


# --- the RCA / postmortem stage ---------------------------------------------------------------


class PostmortemStatus(StrEnum):
    draft = "draft"
    complete = "complete"
    waived = "waived"  # an admin closed the incident without one, with a reason


class PostmortemProgress(BaseModel):
    """How far the document is: sent by the API after each edit (signal) and returned by a draft."""

    sections_total: int = 0
    sections_filled: int = 0


class PostmortemState(BaseModel):
    """The incident's postmortem as the workflow tracks it (the document itself lives in the database)."""

    required: bool
    status: PostmortemStatus = PostmortemStatus.draft
    progress: PostmortemProgress = Field(default_factory=PostmortemProgress)
    reminders_sent: int = 0
    next_reminder_at: datetime | None = None
    remind_after_seconds: int = 0
    remind_every_seconds: int = 0
    manager_after_reminders: int = 0
    url: str = ""
    evidence_at: datetime | None = None  # the resolve the evidence was gathered for (a reopen gathers again)


class OpenPostmortemInput(BaseModel):
    number: int
    severity: Severity
    service: str
    title: str


class PostmortemPlan(BaseModel):
    """Whether the incident needs a postmortem (its severity, from settings) and the reminder timings."""

    required: bool
    remind_after_seconds: int = 0
    remind_every_seconds: int = 0
    manager_after_reminders: int = 0
    url: str = ""  # the postmortem in the API


class GatherEvidenceInput(BaseModel):
    number: int
    service: str
    started_at: datetime  # the incident opened (first alert)
    acknowledged_at: datetime | None = None
    resolved_at: datetime


class EvidenceSummary(BaseModel):
    """What was gathered (the series and charts are stored, not carried in history)."""

    series: int = 0
    charts: list[str] = Field(default_factory=list)
    gaps: list[str] = Field(default_factory=list)  # e.g. "Prometheus unreachable at 12:03:04Z: ..."


class DraftPostmortemInput(BaseModel):
    number: int


class RemindPostmortemInput(BaseModel):
    number: int
    title: str
    reminder: int  # 1, 2, ...: the idempotency of the email (Message-ID) comes from (number, reminder)
    to_manager: bool = False
    assignee: str | None = None  # an email
    acknowledged_by: str | None = None  # an actor label, e.g. "user:alice"
    url: str = ""


class RemindPostmortemResult(BaseModel):
    status: str  # sent | skipped (nobody to remind) | failed
    recipients: list[str] = Field(default_factory=list)  # masked
    error: str | None = None


class CloseInput(BaseModel):
    actor: Actor
    note: str = ""


class RefreshEvidenceInput(BaseModel):
    actor: Actor


class PostmortemDoneInput(BaseModel):
    """Complete (responder) or waive (admin, `reason` required) the incident's postmortem."""

    actor: Actor
    reason: str = ""


IncidentState.model_rebuild()
IncidentInput.model_rebuild()
TransitionResult.model_rebuild()


# --- heartbeat monitors: one HeartbeatMonitorWorkflow per monitor, a durable timer that check-ins reset ---

HEARTBEAT_WORKFLOW = "HeartbeatMonitorWorkflow"
HEARTBEAT_CHECK_IN = "check_in"  # signal: the only message a check-in costs
HEARTBEAT_CONFIGURE = "configure"  # update: interval, grace, pause, names
HEARTBEAT_STATE = "heartbeat_state"  # query
HEARTBEAT_ALERTNAME = "HeartbeatMissed"


def heartbeat_workflow_id(monitor_id: int) -> str:
    """The monitor's workflow id: one durable timer per monitor."""
    return f"vigil-heartbeat-{monitor_id}"


def heartbeat_fingerprint(monitor_id: int, episode: int) -> str:
    """One alert per missed episode: it fires at the miss and resolves at the next check-in."""
    return f"heartbeat/{monitor_id}/{episode}"


class HeartbeatConfig(BaseModel):
    name: str
    service: str
    severity: Severity
    interval_seconds: int = Field(ge=1)
    grace_seconds: int = Field(ge=0)
    paused: bool = False

    @property
    def period(self) -> timedelta:
        """How long after the last check-in (or start, or resume) the monitor is missed."""
        return timedelta(seconds=self.interval_seconds + self.grace_seconds)


class HeartbeatInput(BaseModel):
    """The monitor's start input, and what a continue-as-new carries over."""

    monitor_id: int
    config: HeartbeatConfig
    since: datetime | None = None  # the last reset (check-in, start, resume); None: the run's start
    missed: int = 0  # misses so far: the current (or last) alert episode
    firing: bool = False  # the episode's alert is firing: the next check-in resolves it
    check_ins: int = 0
    last_check_in: datetime | None = None
    # A check-in adds six history events: a run continues-as-new after this many, long before its history is
    # large (tests and the bench lower it).
    check_ins_per_run: int = Field(default=500, ge=1)


class HeartbeatCheckIn(BaseModel):
    """A check-in (the signal's input; empty, so a check-in costs one small history event)."""


class HeartbeatState(HeartbeatInput):
    """What the `heartbeat_state` query and the `configure` update answer."""

    deadline: datetime | None = None  # None while paused or missed (waiting for a check-in)


class HeartbeatAlertInput(BaseModel):
    monitor_id: int
    config: HeartbeatConfig
    episode: int
    status: AlertStatus
    since: datetime  # the last reset: the alert says how long the monitor has been silent
    at: datetime  # when the workflow missed (firing) or saw the check-in (resolved)


class HeartbeatAlertResult(BaseModel):
    incidents: list[int] = Field(default_factory=list)


# --- handoff notices: one ScheduleHandoffWorkflow per schedule, asleep until the next handoff --------------

HANDOFF_WORKFLOW = "ScheduleHandoffWorkflow"
HANDOFF_RESCHEDULE = "reschedule"  # signal: the schedule changed, look again


def handoff_workflow_id(schedule_id: int) -> str:
    """The schedule's handoff timer: one workflow per schedule."""
    return f"vigil-handoff-{schedule_id}"


class HandoffInput(BaseModel):
    """The workflow's start input, and what a continue-as-new carries over (the rest is read from the DB)."""

    schedule_id: int
    # A missed signal (Temporal down during an edit) is caught up by this periodic look at the schedule.
    recheck_seconds: int = Field(default=86400, ge=60)
    wakes_per_run: int = Field(default=100, ge=1)


class HandoffReschedule(BaseModel):
    """The schedule, its layers or its overrides changed (the signal's input)."""


class HandoffPlanInput(BaseModel):
    schedule_id: int
    after: datetime
    horizon_seconds: int


class HandoffPlan(BaseModel):
    exists: bool = True  # False: the schedule was deleted, the workflow ends
    at: datetime | None = None  # the next handoff to someone within the horizon
    user_id: int | None = None  # who takes over then


class HandoffNotice(BaseModel):
    schedule_id: int
    at: datetime  # the handoff: idempotency per (schedule, at)


class HandoffNoticeResult(BaseModel):
    sent: bool
    user_id: int | None = None
    message_id: str | None = None
    skipped: str | None = None  # why nothing went out (the schedule changed, no email address)
