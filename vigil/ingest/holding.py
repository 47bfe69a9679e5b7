"""Alerts kept out of incidents but never dropped: silenced (a silence matches) or suppressed (backpressure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from vigil.contracts import Alert, AlertStatus, Severity
from vigil.ingest.store import IntegrationInfo, in_outbox, insert_for, row_to_alert, stored_links
from vigil.matchers import Matcher, alert_labels, matches_all
from vigil.models import AlertRow, HeldAlert, IncidentGroup, Silence, utcnow

SILENCED, SUPPRESSED, PENDING = "silenced", "suppressed", "pending"
SilenceReader = Callable[[Session, datetime], list[tuple[int, list[Matcher]]]]


@dataclass
class Sorted:
    """The batch split into what goes on to incidents and what is held."""

    passing: list[Alert] = field(default_factory=list)
    held: list[tuple[Alert, str, int | None]] = field(default_factory=list)  # alert, disposition, silence id
    promoted: dict[str, list[int]] = field(default_factory=dict)  # group key -> pending rows now passing

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(disposition for _, disposition, _ in self.held)


def active_silences(session: Session, now: datetime) -> list[tuple[int, list[Matcher]]]:
    rows = session.execute(select(Silence.id, Silence.matchers).where(Silence.starts_at <= now, Silence.ends_at > now))
    return [(sid, [Matcher.model_validate(m) for m in matchers]) for sid, matchers in rows]


def matching_silence(silences: Sequence[tuple[int, list[Matcher]]], alert: Alert) -> int | None:
    labels = alert_labels(alert)
    return next((sid for sid, matchers in silences if matches_all(matchers, labels)), None)


def backlog(session: Session) -> int:
    """Stored alerts not yet delivered to their workflows."""
    return session.scalar(select(func.count()).select_from(AlertRow).where(in_outbox())) or 0


def _already_in_open_incident(
    session: Session, alerts: Sequence[Alert], integration: IntegrationInfo
) -> set[tuple[str, str]]:
    """(group key, fingerprint) of alerts an open incident already holds: their updates must reach it."""
    keys = {integration.group_key(a) for a in alerts}
    rows = session.execute(
        select(IncidentGroup.group_key, AlertRow.fingerprint)
        .join(AlertRow, AlertRow.incident_number == IncidentGroup.incident_number)
        .where(IncidentGroup.group_key.in_(keys), AlertRow.fingerprint.in_({a.fingerprint for a in alerts}))
    )
    return {(k, fp) for k, fp in rows}


def sort_batch(
    session: Session, alerts: Sequence[Alert], integration: IntegrationInfo, *, backlog_limit: int,
    backlog: Callable[[Session], int] = backlog, silences_at: SilenceReader | None = None,
) -> Sorted:
    """Silences first; then, past the backlog limit, `info` alerts are suppressed (never `critical`)."""
    result = Sorted()
    silences = (silences_at or active_silences)(session, utcnow())
    overloaded = any(a.severity == Severity.info for a in alerts) and backlog(session) > backlog_limit
    known = _already_in_open_incident(session, alerts, integration) if (silences or overloaded) else set()
    for alert in alerts:
        silence = matching_silence(silences, alert) if silences else None
        if known and (integration.group_key(alert), alert.fingerprint) in known:
            result.passing.append(alert)
        elif silence is not None:
            result.held.append((alert, SILENCED, silence))
        elif overloaded and alert.severity == Severity.info:
            result.held.append((alert, SUPPRESSED, None))
        else:
            result.passing.append(alert)
    if integration.rules.threshold.count > 1:
        _apply_threshold(session, result, integration)
    return result


def _apply_threshold(session: Session, result: Sorted, integration: IntegrationInfo) -> None:
    """Groups without an open incident open one only at N alerts within the window (or one severe enough);
    below that their alerts wait as `pending`. Runs under the group row's lock, so racing requests count
    each other's alerts."""
    rule = integration.rules.threshold
    by_group: dict[str, list[Alert]] = {}
    for alert in result.passing:
        by_group.setdefault(integration.group_key(alert), []).append(alert)
    result.passing = []
    since = utcnow() - timedelta(seconds=rule.window_seconds)
    for key, alerts in sorted(by_group.items()):  # one lock order for every writer, or PostgreSQL deadlocks
        session.execute(
            insert_for(session, IncidentGroup).values(group_key=key, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["group_key"])
        )
        group = session.execute(select(IncidentGroup).where(IncidentGroup.group_key == key).with_for_update()).scalar_one()
        severe = any(a.severity.rank <= rule.immediate_severity.rank for a in alerts if a.status == AlertStatus.firing)
        if group.incident_number is not None or severe:
            result.passing += alerts
            result.promoted[key] = []
        waiting = session.scalars(
            select(HeldAlert).where(
                HeldAlert.integration_id == integration.id, HeldAlert.group_key == key,
                HeldAlert.disposition == PENDING, HeldAlert.released_at.is_(None),
                HeldAlert.status == AlertStatus.firing.value, HeldAlert.last_seen >= since,
            )
        ).all()
        if key in result.promoted:
            waiting_now = waiting
        else:
            firing = {a.fingerprint for a in alerts if a.status == AlertStatus.firing} | {w.fingerprint for w in waiting}
            if len(firing) < rule.count:
                result.held += [(a, PENDING, None) for a in alerts]
                continue
            result.passing += alerts
            waiting_now = waiting
        # The waiting alerts join the incident this batch opens (or joins).
        fresh = {a.fingerprint for a in alerts}
        result.passing += [row_to_alert(w) for w in waiting_now if w.fingerprint not in fresh]
        result.promoted[key] = [w.id for w in waiting_now]


def store_held(session: Session, held: Sequence[tuple[Alert, str, int | None]], integration: IntegrationInfo) -> None:
    """Upsert: a repeat bumps count and last_seen, a status change is kept."""
    now = utcnow()
    merged: dict[tuple[str, str, str], dict] = {}
    for a, disposition, silence in held:
        key = (integration.group_key(a), a.fingerprint, disposition)
        row = merged.get(key)
        merged[key] = dict(
            integration_id=integration.id, group_key=key[0], fingerprint=a.fingerprint, disposition=disposition,
            silence_id=silence, status=a.status.value, summary=a.summary[:1024], severity=a.severity.value,
            service=a.service, source=a.source[:255], labels=a.labels, annotations=a.annotations,
            starts_at=a.starts_at, ends_at=a.ends_at, first_seen=now, last_seen=now, url=a.url, links=stored_links(a),
            count=(row["count"] + 1) if row else 1,
        )
    if not merged:
        return
    # Rows in key order, the one lock order for every writer (PostgreSQL deadlocks on crossed orders).
    stmt = insert_for(session, HeldAlert).values([row for _, row in sorted(merged.items())])
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["integration_id", "group_key", "fingerprint", "disposition"],
            set_={
                "status": stmt.excluded.status, "summary": stmt.excluded.summary, "ends_at": stmt.excluded.ends_at,
                "silence_id": stmt.excluded.silence_id, "last_seen": stmt.excluded.last_seen,
                "count": HeldAlert.count + stmt.excluded.count,
                # Held again after a release: it is waiting again.
                "released_at": None, "released_to": None,
            },
        )
    )


def releasable(session: Session, *, limit: int) -> list[tuple[HeldAlert, Alert]]:
    """Silenced alerts still firing whose silence has ended and that no other active silence matches."""
    now = utcnow()
    silences = active_silences(session, now)
    rows = session.scalars(
        select(HeldAlert)
        .join(Silence, Silence.id == HeldAlert.silence_id)
        .where(
            HeldAlert.disposition == SILENCED,
            HeldAlert.released_at.is_(None),
            HeldAlert.status == AlertStatus.firing.value,
            Silence.ends_at <= now,
        )
        .order_by(HeldAlert.id)
        .limit(limit)
    )
    out = []
    for row in rows:
        alert = row_to_alert(row)  # type: ignore[arg-type]
        if matching_silence(silences, alert) is None:
            out.append((row, alert))
    return out


def mark_released(session: Session, released: dict[int, int]) -> None:
    """held alert id -> the incident it went to."""
    now = utcnow()
    for held_id, number in released.items():
        session.execute(update(HeldAlert).where(HeldAlert.id == held_id).values(released_at=now, released_to=number))


def resolve_held(session: Session, *, integration: IntegrationInfo, fingerprint: str) -> bool:
    """A resolve for an alert that is held (not in an incident): keep the status so it is never released."""
    result = session.execute(
        update(HeldAlert)
        .where(
            HeldAlert.integration_id == integration.id,
            HeldAlert.fingerprint == fingerprint,
            HeldAlert.released_at.is_(None),
        )
        .values(status=AlertStatus.resolved.value, ends_at=utcnow(), last_seen=utcnow(), count=HeldAlert.count + 1)
    )
    return bool(result.rowcount)
