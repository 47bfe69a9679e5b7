"""DB side of ingestion: join-or-create the group's incident, upsert alerts, track what was delivered."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, bindparam, delete, func, or_, select, text, update
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
    return _upserted(returned, now, occurrences, latest)


def _upserted(
    returned: Sequence[Sequence], now: datetime, occurrences: Counter[str], latest: dict[str, Alert]
) -> UpsertResult:
    """Each alert's outcome from the rows the upsert returned (fingerprint, status, delivered status, first seen)."""
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


# PostgreSQL: a group's alerts stored in one statement, outside any transaction (one round trip), when the
# group has an open incident and the cached tables (integrations, silences) are unchanged since the caller
# checked the key and the holds in memory: the tokens, the group's incident and the upsert in one snapshot,
# as the ingest transaction reads them in order. The rows come as arrays (unnest): one statement text whatever
# the batch size, so psycopg prepares it once instead of parsing a 100-row VALUES list on every request.
# Rows are inserted in the order given (fingerprint order, WITH ORDINALITY), the one lock order for every
# writer. Nothing is written when the group has no incident or a token changed (the caller then runs the
# ingest transaction); the answer says which.
_REPEAT_COLUMNS = (
    ("fingerprint", "varchar"), ("status", "varchar"), ("summary", "varchar"), ("severity", "varchar"),
    ("service", "varchar"), ("source", "varchar"), ("labels", "json"), ("annotations", "json"),
    ("starts_at", "timestamptz"), ("ends_at", "timestamptz"), ("count", "integer"), ("url", "varchar"),
    ("links", "json"),
)
_STORE_REPEATS = """
WITH tok AS (
    SELECT (SELECT token FROM cache_versions WHERE name = 'integrations') AS itok,
           (SELECT token FROM cache_versions WHERE name = 'silences') AS stok
), inc AS (
    SELECT i.number, i.service, i.severity, i.title
    FROM incident_groups AS g JOIN incidents AS i ON g.incident_number = i.number
    WHERE g.group_key = CAST(:key AS varchar)
), up AS (
    INSERT INTO alerts (incident_number, integration_id, fingerprint, status, summary, severity, service, source,
                        labels, annotations, starts_at, ends_at, first_seen, last_seen, count, url, links)
    SELECT inc.number, CAST(:integration_id AS integer), r.fingerprint, r.status, r.summary, r.severity, r.service,
           r.source, r.labels, r.annotations, r.starts_at, r.ends_at, CAST(:now AS timestamptz),
           CAST(:now AS timestamptz), r.count, r.url, r.links
    FROM inc, tok, ROWS AS r(fingerprint, status, summary, severity, service, source, labels, annotations,
                             starts_at, ends_at, count, url, links, ord)
    WHERE tok.itok IS NOT DISTINCT FROM CAST(:itok AS varchar) AND tok.stok IS NOT DISTINCT FROM CAST(:stok AS varchar)
    ORDER BY r.ord
    ON CONFLICT (incident_number, fingerprint) DO UPDATE SET
        status = excluded.status, summary = excluded.summary, ends_at = excluded.ends_at,
        last_seen = excluded.last_seen, count = alerts.count + excluded.count
    RETURNING fingerprint, status, delivered_status, first_seen
)
SELECT tok.itok, tok.stok, inc.number, inc.service, inc.severity, inc.title,
       up.fingerprint, up.status, up.delivered_status, up.first_seen
FROM tok LEFT JOIN inc ON true LEFT JOIN up ON true
"""
# One alert (a single-alert request): its values as scalars (dumping 13 one-element arrays costs more).
_STORE_ONE_REPEAT = text(_STORE_REPEATS.replace("ROWS", "(VALUES ({}, 1))".format(
    ", ".join(f"CAST(:{name} AS {kind})" for name, kind in _REPEAT_COLUMNS))))
_STORE_MANY_REPEATS = text(_STORE_REPEATS.replace("ROWS", "unnest({}) WITH ORDINALITY".format(
    ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _REPEAT_COLUMNS))))


@dataclass(frozen=True)
class StoredRepeats:
    """What store_repeats found: the tokens it read and, when it stored, the incident and the outcomes."""

    tokens: tuple[str | None, str | None]
    incident: OpenIncident | None
    upserted: UpsertResult | None


def store_repeats(
    connection: Connection, *, key: str, alerts: Sequence[Alert], integration: IntegrationInfo,
    tokens: tuple[str | None, str | None],
) -> StoredRepeats:
    """Store `alerts` (all of group `key`) in the group's open incident in one statement (PostgreSQL, on an
    autocommit connection), if the group has one and the tokens (integrations, silences) are still `tokens`.
    The same rows, outcomes and lock order as join_or_create and upsert_alerts for an open incident."""
    occurrences = Counter(a.fingerprint for a in alerts)
    latest = {a.fingerprint: a for a in alerts}
    ordered = [a for _, a in sorted(latest.items())]
    now = utcnow()
    dumps = json.dumps  # as SQLAlchemy's JSON type serialises (None is JSON null, as the ORM stores it)
    columns = {
        "fingerprint": [a.fingerprint for a in ordered], "status": [a.status.value for a in ordered],
        "summary": [a.summary[:1024] for a in ordered], "severity": [a.severity.value for a in ordered],
        "service": [a.service for a in ordered], "source": [a.source[:255] for a in ordered],
        "labels": [dumps(a.labels) for a in ordered], "annotations": [dumps(a.annotations) for a in ordered],
        "starts_at": [a.starts_at for a in ordered], "ends_at": [a.ends_at for a in ordered],
        "count": [occurrences[a.fingerprint] for a in ordered], "url": [a.url for a in ordered],
        "links": [dumps(stored_links(a)) for a in ordered],
    }
    one = len(ordered) == 1
    params = {"key": key, "integration_id": integration.id, "now": now, "itok": tokens[0], "stok": tokens[1],
              **({name: values[0] for name, values in columns.items()} if one else columns)}
    rows = connection.execute(_STORE_ONE_REPEAT if one else _STORE_MANY_REPEATS, params).all()
    itok, stok, number, service, severity, title = rows[0][:6]
    if rows[0][6] is None:  # nothing stored: no open incident, or a token changed
        return StoredRepeats((itok, stok), None, None)
    incident = OpenIncident(number, False, key, service, Severity(severity), title)
    return StoredRepeats((itok, stok), incident, _upserted([r[6:] for r in rows], now, occurrences, latest))


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
