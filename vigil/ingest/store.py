"""DB side of ingestion: join-or-create the group's incident, upsert alerts, track what was delivered."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil.contracts import Alert, AlertLink, AlertStatus, FrozenPolicy, IncidentStatus, Severity
from vigil.ingest.fit import fit_group_key
from vigil.normalize import group_key
from vigil.rules import IntegrationRules
from vigil.models import AlertRow, HeldAlert, Incident, IncidentGroup, Integration, utcnow


@dataclass(frozen=True)
class IntegrationInfo:
    """What ingestion needs to know about the sending integration."""

    id: int
    name: str
    kind: str
    auto_resolve: bool
    hold_resolution_seconds: int = 0
    rules: IntegrationRules = field(default_factory=IntegrationRules)
    # Set when a sender's key was checked (vigil.ingest.cache): the key's hash and the integrations token it was
    # checked under; the ingest transaction checks the key again only when the table changed since.
    key_hash: str | None = field(default=None, compare=False, repr=False)
    token: object = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, row: Integration) -> IntegrationInfo:
        rules = IntegrationRules.model_validate(row.rules) if row.rules else IntegrationRules()
        return cls(row.id, row.name, row.kind, row.auto_resolve, row.hold_resolution_seconds, rules)

    def group_key(self, alert: Alert) -> str:
        return fit_group_key(group_key(alert, self.rules.group_by))


def insert_for(session: Session, model: type):  # noqa: ANN202 - dialect-specific Insert
    """INSERT ... ON CONFLICT for whichever of SQLite or PostgreSQL we are on."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


INTERNAL_KIND = "internal"
OPERATOR_INTEGRATION = "vigil (internal)"


def operator_integration(session: Session) -> Integration:
    """The built-in integration Vigil raises its own problems through; created on first use."""
    row = session.scalar(select(Integration).where(Integration.kind == INTERNAL_KIND).order_by(Integration.id).limit(1))
    if row is not None:
        return row
    # Nobody sends with this key: a random one, never shown.
    digest = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    session.execute(
        insert_for(session, Integration).values(
            name=OPERATOR_INTEGRATION, kind=INTERNAL_KIND, prefix="internal", key_hash=digest, auto_resolve=False,
            hold_resolution_seconds=0, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.scalar(select(Integration).where(Integration.kind == INTERNAL_KIND).order_by(Integration.id).limit(1))
    if row is None:
        raise RuntimeError(f"an integration named {OPERATOR_INTEGRATION!r} exists and is not Vigil's own; rename it")
    return row


@dataclass(frozen=True)
class OpenIncident:
    number: int
    created: bool
    group_key: str
    service: str
    severity: Severity
    title: str
    # A new incident's escalation policy, frozen in the transaction that created its row (IncidentInput.plan);
    # None: its workflow freezes it itself.
    plan: FrozenPolicy | None = None


# The hot path's read, built once and run as a Core statement (no ORM entity to load): a group's open incident.
_incidents, _groups = Incident.__table__, IncidentGroup.__table__
_OPEN_INCIDENT = (
    select(_incidents.c.number, _incidents.c.service, _incidents.c.severity, _incidents.c.title)
    .select_from(_groups.join(_incidents, _groups.c.incident_number == _incidents.c.number))
    .where(_groups.c.group_key == bindparam("key"))
)


def join_or_create(session: Session, *, key: str, lead: Alert, integration: IntegrationInfo) -> OpenIncident:
    """The open incident for `key`, creating it if there is none. Atomic under concurrent callers."""
    # Hot path, a plain read: once a group has its incident the row only changes when it is released,
    # and a closing incident refuses the alerts (the caller then retries here).
    found = session.connection().execute(_OPEN_INCIDENT, {"key": key}).first()
    if found is not None:
        number, service, severity, title = found
        return OpenIncident(number, False, key, service, Severity(severity), title)
    # The group row's primary key serialises racers: losers of the insert wait, then read the winner's row.
    session.execute(
        insert_for(session, IncidentGroup).values(group_key=key, created_at=utcnow()).on_conflict_do_nothing(
            index_elements=["group_key"]
        )
    )
    group = session.execute(
        select(IncidentGroup).where(IncidentGroup.group_key == key).with_for_update()
    ).scalar_one()
    if group.incident_number is not None:
        incident = session.get_one(Incident, group.incident_number)
        return OpenIncident(incident.number, False, key, incident.service, Severity(incident.severity), incident.title)
    incident = Incident(
        group_key=key,
        integration_id=integration.id,
        service=lead.service,
        severity=lead.severity.value,
        title=lead.summary[:500],
        status=IncidentStatus.triggered.value,
    )
    session.add(incident)
    session.flush()
    group.incident_number = incident.number
    return OpenIncident(incident.number, True, key, lead.service, lead.severity, incident.title)


@dataclass(frozen=True)
class UpsertResult:
    undelivered: list[Alert]
    outcomes: Counter[str]


def upsert_alerts(session: Session, *, number: int, alerts: Sequence[Alert], integration: IntegrationInfo) -> UpsertResult:
    """Store every alert (repeats bump count and last_seen); return those the workflow has not seen yet."""
    occurrences = Counter(a.fingerprint for a in alerts)
    latest = {a.fingerprint: a for a in alerts}
    now = utcnow()
    # Rows in one order for every writer (by fingerprint): PostgreSQL deadlocks two upserts that lock the
    # same rows in different orders, as concurrent batches of one group in a storm would.
    rows = [
        dict(
            incident_number=number, integration_id=integration.id, fingerprint=a.fingerprint, status=a.status.value,
            summary=a.summary[:1024], severity=a.severity.value, service=a.service, source=a.source[:255],
            labels=a.labels, annotations=a.annotations, starts_at=a.starts_at, ends_at=a.ends_at,
            first_seen=now, last_seen=now, count=occurrences[a.fingerprint], url=a.url, links=stored_links(a),
        )
        for _, a in sorted(latest.items())
    ]
    # One statement: the upsert returns each row as it now stands, so what the workflow has not seen yet
    # (status != delivered_status) is read atomically with the write, without a second query. Executed
    # with a parameter list (SQLAlchemy's "insertmanyvalues"), so the statement is compiled once per process
    # and cached, not rebuilt with literal rows on every request.
    # One row (a single-alert request) goes as a plain execute: cheaper than insertmanyvalues' batching of one.
    returned = session.connection().execute(
        _upsert_statement(session.get_bind().dialect.name), rows[0] if len(rows) == 1 else rows
    ).all()
    outcomes: Counter[str] = Counter()
    pending: set[str] = set()
    for fp, status, delivered, first_seen in returned:
        inserted = first_seen == now  # an existing row keeps its older first_seen
        if delivered != status:
            pending.add(fp)
        # A status change differs from what was delivered; a repeat of an alert whose first delivery is
        # still in flight (delivered is None) is a repeat, though it goes to the workflow again (a no-op there).
        # Every copy of a new fingerprint after the first is a repeat.
        changed = delivered is not None and delivered != status
        outcome = "new" if inserted else ("changed" if changed else "repeat")
        outcomes[outcome] += 1
        outcomes["repeat"] += occurrences[fp] - 1
    return UpsertResult(undelivered=[a for fp, a in latest.items() if fp in pending], outcomes=outcomes)


@functools.cache
def _upsert_statement(dialect: str):  # noqa: ANN202 - dialect-specific Insert
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AlertRow)
    return stmt.on_conflict_do_update(
        index_elements=["incident_number", "fingerprint"],
        set_={
            "status": stmt.excluded.status,
            "summary": stmt.excluded.summary,
            "ends_at": stmt.excluded.ends_at,
            "last_seen": stmt.excluded.last_seen,
            "count": AlertRow.count + stmt.excluded.count,
        },
    ).returning(AlertRow.fingerprint, AlertRow.status, AlertRow.delivered_status, AlertRow.first_seen)


def in_outbox() -> ColumnElement[bool]:
    """Stored, not yet delivered in its current status, and not dead-lettered: what redelivery owes."""
    return and_(
        or_(AlertRow.delivered_status.is_(None), AlertRow.delivered_status != AlertRow.status),
        AlertRow.dead_lettered_at.is_(None),
    )


def undelivered(session: Session, *, number: int) -> list[Alert]:
    """Alerts whose current status has not reached the workflow yet (the outbox)."""
    query = select(AlertRow).where(AlertRow.incident_number == number, in_outbox())
    return [row_to_alert(r) for r in session.scalars(query.order_by(AlertRow.id))]


def outbox_incidents(session: Session, *, limit: int) -> list[int]:
    """Incidents with undelivered alerts, the one waiting longest first."""
    oldest = func.min(AlertRow.id)
    return list(
        session.scalars(
            select(AlertRow.incident_number)
            .where(in_outbox())
            .group_by(AlertRow.incident_number)
            .order_by(oldest)
            .limit(limit)
        )
    )


_alerts = AlertRow.__table__
# Built once, run with a parameter list (one executemany, not a statement built per alert).
_MARK_DELIVERED = (
    update(_alerts)
    .where(_alerts.c.incident_number == bindparam("n"), _alerts.c.fingerprint == bindparam("fp"),
           _alerts.c.status == bindparam("st"))
    .values(delivered_status=bindparam("st"))
)


def mark_delivered(session: Session, *, number: int, alerts: Sequence[Alert]) -> None:
    """Only if the status is still the one delivered: a newer change stays in the outbox. Rows are updated
    in fingerprint order, the upsert's lock order, so concurrent deliveries cannot deadlock."""
    rows = [{"n": number, "fp": a.fingerprint, "st": a.status.value} for a in sorted(alerts, key=lambda a: a.fingerprint)]
    if rows:
        session.connection().execute(_MARK_DELIVERED, rows)


@dataclass(frozen=True)
class OutboxCounts:
    undelivered: int
    dead_lettered: int


def outbox_counts(session: Session, *, undelivered: bool = True) -> OutboxCounts:
    """How many alerts wait in the outbox (a scan: skip it with undelivered=False), and how many were
    dead-lettered (indexed), waiting for an operator."""
    waiting = 0
    if undelivered:
        waiting = session.scalar(select(func.count()).select_from(AlertRow).where(in_outbox())) or 0
    dead = session.scalar(
        select(func.count()).select_from(AlertRow).where(AlertRow.dead_lettered_at.is_not(None))
    ) or 0
    return OutboxCounts(waiting, dead)


def redeliver_dead_letter(session: Session, *, alert_id: int) -> AlertRow | None:
    """Put a dead-lettered alert back in the outbox with a fresh count of tries; None if it is not dead."""
    row = session.get(AlertRow, alert_id, with_for_update=True)
    if row is None or row.dead_lettered_at is None:
        return None
    row.dead_lettered_at, row.delivery_attempts = None, 0
    return row


def record_refusal(
    session: Session, *, number: int, alerts: Sequence[Alert], error: str, dead_letter_after: int
) -> list[tuple[int, Alert]]:
    """Count a refusal against each alert; return (row id, alert) of those it dead-letters now."""
    dead: list[tuple[int, Alert]] = []
    for a in sorted(alerts, key=lambda a: a.fingerprint):  # the upsert's lock order
        row = session.scalar(
            select(AlertRow).where(AlertRow.incident_number == number, AlertRow.fingerprint == a.fingerprint)
            .with_for_update()
        )
        if row is None or row.dead_lettered_at is not None:
            continue
        row.delivery_attempts += 1
        row.delivery_error = error[:2000]
        if row.delivery_attempts >= dead_letter_after:
            row.dead_lettered_at = utcnow()
            dead.append((row.id, row_to_alert(row)))
    return dead


def has_delivered(session: Session, *, number: int) -> bool:
    """Whether any alert of the incident reached its workflow (so the workflow has existed)."""
    return session.scalar(
        select(AlertRow.id).where(AlertRow.incident_number == number, AlertRow.delivered_status.is_not(None)).limit(1)
    ) is not None


def release_group(session: Session, *, key: str, number: int) -> None:
    """The workflow refused new alerts (closed): free the key so the next attempt opens a new incident."""
    session.execute(delete(IncidentGroup).where(IncidentGroup.group_key == key, IncidentGroup.incident_number == number))


def resolve_by_fingerprint(session: Session, *, integration: IntegrationInfo, fingerprint: str) -> tuple[int, Alert] | None:
    """Mark the open alert with this dedup key resolved; its incident number and the alert, if any."""
    row = open_alert(session, integration=integration, fingerprint=fingerprint)
    if row is None:
        return None
    if row.status != AlertStatus.resolved.value:
        row.status, row.ends_at = AlertStatus.resolved.value, utcnow()
    row.last_seen = utcnow()
    row.count += 1
    return row.incident_number, row_to_alert(row)


def open_alert(session: Session, *, integration: IntegrationInfo, fingerprint: str) -> AlertRow | None:
    """The newest alert with this fingerprint whose incident is not closed (or ended outside Vigil)."""
    return session.scalar(
        select(AlertRow)
        .join(Incident, Incident.number == AlertRow.incident_number)
        .where(
            and_(
                AlertRow.integration_id == integration.id,
                AlertRow.fingerprint == fingerprint,
                Incident.status.not_in((IncidentStatus.closed.value, IncidentStatus.ended.value)),
            )
        )
        .order_by(AlertRow.id.desc())
        .limit(1)
    )


def row_to_alert(row: AlertRow | HeldAlert) -> Alert:
    return Alert(
        fingerprint=row.fingerprint, status=AlertStatus(row.status), summary=row.summary,
        severity=Severity(row.severity), service=row.service, source=row.source, labels=row.labels,
        annotations=row.annotations, starts_at=row.starts_at, ends_at=row.ends_at, url=row.url,
        links=[AlertLink.model_validate(x) for x in row.links or []],
    )


def stored_links(alert: Alert) -> list[dict[str, str]] | None:
    """The JSON the `links` column keeps (NULL when the source sent none)."""
    return [x.model_dump(exclude_none=True) for x in alert.links] or None
