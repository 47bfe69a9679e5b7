"""SQLAlchemy 2 typed models. The schema changes through Alembic only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, CheckConstraint, Date, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator
from vigil.contracts import incident_ref

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite wants INTEGER PRIMARY KEY for rowid aliasing; PostgreSQL gets a BIGINT identity.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest with the process's secrets key (vigil.crypto); plain str in Python."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        from vigil import crypto  # noqa: PLC0415 - keeps cryptography out of the workflow sandbox's imports

        return None if value is None else crypto.encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        from vigil import crypto  # noqa: PLC0415

        return None if value is None else crypto.decrypt(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))  # viewer | responder | admin
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")  # IANA name
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # past it the key gets 401
    # Written at most once a minute per key (vigil.security.LAST_USED_GRANULARITY), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who did what to an API key (or an admin role), from where. Never updated or deleted by Vigil."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(32))  # key.create | key.revoke | admin.recover | ...
    # No foreign keys: the log outlives the users and keys it names.
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(320))
    subject_user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    key_id: Mapped[int | None] = mapped_column(BigInteger)
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class Integration(Base):
    __tablename__ = "integrations"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # alertmanager | pagerduty | generic
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    auto_resolve: Mapped[bool] = mapped_column(default=True)
    # Flap damping: auto-resolve only after every alert has stayed resolved this long (0: at once).
    hold_resolution_seconds: Mapped[int] = mapped_column(default=0, server_default="0")
    # vigil.rules.IntegrationRules as JSON: routes, group_by, severity_map. NULL: the defaults.
    rules: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Incident(Base):
    __tablename__ = "incidents"
    # AUTOINCREMENT on SQLite: numbers are never reused, because INC-<n> is also a workflow id.
    __table_args__ = (Index("ix_incidents_status_severity", "status", "severity"), {"sqlite_autoincrement": True})

    number: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    group_key: Mapped[str] = mapped_column(String(512), index=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    service: Mapped[str] = mapped_column(String(200), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reopen_count: Mapped[int] = mapped_column(default=0)
    jira_key: Mapped[str | None] = mapped_column(String(64))
    # Temporal's status of a workflow that ended outside Vigil (terminated, canceled, failed, timed_out);
    # set with status `ended` by the ended-workflow check, and never overwritten by a late projection.
    workflow_status: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def ref(self) -> str:
        return incident_ref(self.number)


class IncidentGroup(Base):
    """At most one open incident per group key: the unique primary key makes join-or-start atomic."""

    __tablename__ = "incident_groups"

    group_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    incident_number: Mapped[int | None] = mapped_column(ForeignKey("incidents.number"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AlertFields:
    """What every stored alert carries, in an incident or held: source status, payload, counts."""

    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(1024))
    severity: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(255), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    count: Mapped[int] = mapped_column(default=1)
    # The source's link to the alert (Alertmanager's generatorURL, whose g0.expr is the rule's PromQL: RCA evidence).
    url: Mapped[str | None] = mapped_column(String(2048))
    # PagerDuty's links and images (vigil.contracts.AlertLink as dicts); NULL on rows stored before 0015.
    links: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)


class AlertRow(AlertFields, Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("incident_number", "fingerprint"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), index=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    fingerprint: Mapped[str] = mapped_column(String(255), index=True)
    # The status last delivered to the workflow; differs from `status` while a change sits in the outbox.
    delivered_status: Mapped[str | None] = mapped_column(String(16))
    # Refusals by Temporal that a retry would not cure (not outages); past the limit the alert is dead-lettered:
    # out of the outbox, listed in GET /api/v1/alerts?status=dead_letter, and the operator is paged.
    delivery_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    delivery_error: Mapped[str | None] = mapped_column(Text)
    dead_lettered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class TimelineEvent(Base):
    __tablename__ = "timeline_events"
    # (incident, seq) is unique so a retried projection activity never duplicates an entry.
    __table_args__ = (UniqueConstraint("incident_number", "seq"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), index=True)
    seq: Mapped[int]
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)


class NotificationAttempt(Base):
    """One row per send attempt, never updated into another: a page sent twice must show twice."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    step: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(200))  # the person's or webhook's name
    # sending | sent | failed | cancelled | lost (its worker died mid-send; a later attempt of the key retried it)
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The provider's word afterwards (callbacks): delivered | failed | ivr_answered | ivr_no_answer.
    receipt: Mapped[str | None] = mapped_column(String(32))
    receipt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    receipt_error: Mapped[str | None] = mapped_column(Text)


class Silence(Base):
    """Label matchers with a start, an end and a reason; matching alerts are held, not paged."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CacheVersion(Base):
    """A token per cached table (`integrations`, `silences`), set anew by database triggers on every write to the
    table (migration 0016): a process keeps the table in memory until the token it read with it changes."""

    __tablename__ = "cache_versions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))


class HeldAlert(AlertFields, Base):
    """An alert stored but kept out of incidents: `silenced` or `suppressed` (backpressure). Never dropped.

    A silenced alert that still fires when its silence ends is released into an incident then.
    """

    __tablename__ = "held_alerts"
    __table_args__ = (UniqueConstraint("integration_id", "group_key", "fingerprint", "disposition"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    group_key: Mapped[str] = mapped_column(String(512), index=True)
    fingerprint: Mapped[str] = mapped_column(String(255), index=True)
    disposition: Mapped[str] = mapped_column(String(16))  # silenced | suppressed | pending
    silence_id: Mapped[int | None] = mapped_column(ForeignKey("silences.id"))
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_to: Mapped[int | None] = mapped_column(ForeignKey("incidents.number"))


# --- people, schedules and escalation policies ---------------------------------------------------


class ContactGroup(Base):
    """A named, ordered list of users; a step targeting it pages every member."""

    __tablename__ = "contact_groups"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    members: Mapped[list[ContactGroupMember]] = relationship(
        order_by="ContactGroupMember.position", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def member_ids(self) -> list[int]:
        return [m.user_id for m in self.members]


class ContactGroupMember(Base):
    __tablename__ = "contact_group_members"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("contact_groups.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    # No cascade: a user still in a group cannot be deleted (the API names the group).
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)


class Schedule(Base):
    """Layers of rotations in one time zone (vigil.oncall.Layer), overrides on top; the last layer wins."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    layers: Mapped[list[ScheduleLayer]] = relationship(
        order_by="ScheduleLayer.position", cascade="all, delete-orphan", lazy="selectin"
    )


class ScheduleLayer(Base):
    """One rotation of a schedule (weekly, daily or hourly), optionally restricted to days and hours."""

    __tablename__ = "schedule_layers"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]  # 0 = the base layer; a higher one wins where it has someone
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16), default="weekly")  # vigil.oncall.RotationKind
    every: Mapped[int] = mapped_column(default=1)
    handoff_weekday: Mapped[int] = mapped_column(default=0)  # 0 = Monday; weekly only
    handoff_time: Mapped[str] = mapped_column(String(5))  # HH:MM, local
    rotation_start: Mapped[date] = mapped_column(Date)
    restrict_weekdays: Mapped[list[int] | None] = mapped_column(JSON)  # None: no restriction
    restrict_start: Mapped[str | None] = mapped_column(String(5))  # HH:MM, local; None: the whole day
    restrict_end: Mapped[str | None] = mapped_column(String(5))
    participants: Mapped[list[ScheduleParticipant]] = relationship(
        order_by="ScheduleParticipant.position", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def participant_ids(self) -> list[int]:
        return [p.user_id for p in self.participants]


class ScheduleParticipant(Base):
    __tablename__ = "schedule_participants"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    # Kept beside layer_id: "which schedules hold this user" stays one join.
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("schedule_layers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)


class CalendarFeed(Base):
    """A secret iCal URL: a schedule's shifts, or one user's across schedules. Stored as a hash, like API keys."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        CheckConstraint("(schedule_id IS NULL) <> (user_id IS NULL)", name="one_subject"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Who made it: they (or an admin) may list, rotate and revoke it.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ScheduleOverride(Base):
    """`user_id` is on call for the schedule in [starts_at, ends_at); the newest one wins an overlap."""

    __tablename__ = "schedule_overrides"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    # Past overrides go with their user; the API refuses to delete a user with a current or future one.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Webhook(Base):
    """An outgoing webhook, the target of the `webhook` channel."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    # HMAC key of the signature header; never read back through the API, Fernet-encrypted at rest.
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EscalationPolicyRow(Base):
    """Steps as JSON (vigil.contracts.PolicyStep, targets as {kind, id}); frozen into each incident at its start."""

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    repeat: Mapped[int] = mapped_column(default=0)
    manager: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ack_timeout_seconds: Mapped[int] = mapped_column(default=1800)
    ivr_attempts: Mapped[int] = mapped_column(default=3)
    ivr_retry_seconds: Mapped[int] = mapped_column(default=120)
    severity_multipliers: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class EscalationRoute(Base):
    """Service (exact or `*`) and severities (empty: all) -> policy; the lowest matching position wins."""

    __tablename__ = "escalation_routes"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    position: Mapped[int] = mapped_column(index=True)
    service: Mapped[str] = mapped_column(String(200))
    severities: Mapped[list[str]] = mapped_column(JSON, default=list)
    policy_id: Mapped[int] = mapped_column(ForeignKey("escalation_policies.id"), index=True)


class ProviderCallback(Base):
    """Every provider callback accepted, once: a redelivered event_id is answered without acting again."""

    __tablename__ = "provider_callbacks"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    incident_number: Mapped[int | None] = mapped_column(index=True)
    outcome: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AckLinkUse(Base):
    """An email acknowledge link's nonce, stored when the link is used: each link acknowledges once."""

    __tablename__ = "ack_link_uses"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_number: Mapped[int] = mapped_column(index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    used_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class JiraIssue(Base):
    """INC-<n> -> its Jira issue. Stored right after creation; a search by label recovers a lost one."""

    __tablename__ = "jira_issues"

    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), primary_key=True)
    jira_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class JiraSyncEntry(Base):
    """One Jira call or webhook event: direction, operation, outcome, error, latency."""

    __tablename__ = "jira_sync_log"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int | None] = mapped_column(index=True)
    direction: Mapped[str] = mapped_column(String(8))  # out (Vigil -> Jira) | in (webhook)
    operation: Mapped[str] = mapped_column(String(64))
    jira_key: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # ok | skipped | failed | retrying | ignored
    error: Mapped[str | None] = mapped_column(Text)
    jira_id: Mapped[str | None] = mapped_column(String(64), index=True)  # e.g. the id of a comment Vigil wrote
    # SHA-256 of an inbound webhook's signed body: a captured delivery resent under a new identifier is a duplicate.
    body_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    latency_ms: Mapped[int | None] = mapped_column()
    attempt: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# --- the RCA stage: postmortems, evidence, attachments (docs/rca.md) -------------------------------


class Postmortem(Base):
    """An incident's postmortem: opened at resolve when its severity requires one."""

    __tablename__ = "postmortems"

    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | complete | waived
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    completed_by: Mapped[str | None] = mapped_column(String(200))
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    waived_by: Mapped[str | None] = mapped_column(String(200))
    waived_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    waived_reason: Mapped[str | None] = mapped_column(Text)
    sections: Mapped[list[PostmortemSection]] = relationship(
        order_by="PostmortemSection.position", cascade="all, delete-orphan", lazy="selectin"
    )


class PostmortemSection(Base):
    """One section of the document. `edited` once a person changed it: a refresh of the draft never overwrites it."""

    __tablename__ = "postmortem_sections"
    __table_args__ = (UniqueConstraint("incident_number", "key"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(
        ForeignKey("postmortems.incident_number", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int]
    edited: Mapped[bool] = mapped_column(default=False)
    updated_by: Mapped[str] = mapped_column(String(200))  # an actor label: user:alice, system:vigil
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EvidenceSeries(Base):
    """One Prometheus range of an incident: the query, its points (or the error), and its chart's artifact key."""

    __tablename__ = "evidence_series"
    __table_args__ = (UniqueConstraint("incident_number", "name"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    promql: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # alert | service
    step_seconds: Mapped[int]
    # Prometheus's matrix as returned: [{"metric": {labels}, "values": [[unix seconds, "value"], ...]}, ...]
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    threshold: Mapped[float | None] = mapped_column(Float)
    chart_key: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    gathered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PostmortemAttachment(Base):
    """A file a responder attached (log, screenshot, PDF); the bytes live in the artifact store under `artifact_key`."""

    __tablename__ = "postmortem_attachments"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    incident_number: Mapped[int] = mapped_column(ForeignKey("incidents.number"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    artifact_key: Mapped[str] = mapped_column(String(300), unique=True)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EvidenceQuery(Base):
    """A PromQL query run as evidence for every incident of a service, or of an integration's alerts."""

    __tablename__ = "evidence_queries"
    __table_args__ = (CheckConstraint("(service IS NULL) <> (integration_id IS NULL)", name="one_scope"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    promql: Mapped[str] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(200), index=True)
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    threshold: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class HeartbeatMonitor(Base):
    """A heartbeat monitor: missed when no check-in arrives within interval + grace. Its timer is the workflow
    `vigil-heartbeat-<id>`; this row holds what the API lists and the check-in token's hash."""

    __tablename__ = "heartbeat_monitors"
    # AUTOINCREMENT on SQLite: ids are never reused, because vigil-heartbeat-<id> is also a workflow id.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    service: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    interval_seconds: Mapped[int]
    grace_seconds: Mapped[int]
    paused: Mapped[bool] = mapped_column(default=False)
    token_prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_check_in_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Written by the workflow's activities: set when a miss opened an alert, cleared when a check-in resolved it.
    down_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    misses: Mapped[int] = mapped_column(default=0)  # the last alert episode: restarting the workflow resumes it
    incident_number: Mapped[int | None] = mapped_column(BigInteger)


# --- change events (PagerDuty /v2/change/enqueue): context on incidents, never an incident themselves -----


class ChangeEvent(Base):
    """A deploy, a config change, a flag flip: shown on the incidents of its service, read-time only."""

    __tablename__ = "change_events"
    # Incidents read their service's changes by time (vigil/changes.py).
    __table_args__ = (Index("ix_change_events_service_at", "service", "at"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str | None] = mapped_column(String(255))
    # The sender's `payload.timestamp` (when the change happened), else when Vigil received it.
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    custom_details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    links: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
