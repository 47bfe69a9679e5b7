"""The alert outbox: alerts are stored first and then delivered to their incident's workflow; what Temporal
refuses is retried alert by alert and dead-lettered past a limit, and the reconciler redelivers whatever is
stored but undelivered. Shared by the API and the reconciler, so the two never disagree on how an alert reaches
an incident."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter as Counter_
from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from client.connection import is_outage
from client.errors import GroupKeptClosing, IncidentClosed, TemporalUnavailable, WorkflowTimeout
from client.incidents import IncidentClient
from vigil.db import transaction
from vigil.escalation import default_plan
from vigil.policies import service as policies
from vigil.contracts import Alert, AlertStatus, Severity, incident_ref, workflow_id
from vigil.ingest import cache as ingest_cache
from vigil.ingest import fit, holding, store
from vigil.ingest.store import IntegrationInfo
from vigil.logging import get_logger
from vigil.models import Incident, Integration, utcnow
from vigil.outbox import RedeliveryResult
from vigil.settings import Settings

log = get_logger(__name__)
INTERNAL_KIND = store.INTERNAL_KIND
OPERATOR_SERVICE = "vigil"
OPERATOR_ALERTNAME = "VigilNeedsAttention"
MAX_JOIN_ATTEMPTS = 3
BACKLOG_TTL = 2.0
REDELIVERY_CONCURRENCY = 10
SUPPRESSED = Counter_(
    "vigil_alerts_suppressed_total", "info alerts stored as suppressed under backpressure", ["integration"]
)
OUTBOX = Gauge(
    "vigil_outbox_alerts", "stored alerts not yet delivered to their incident's workflow", multiprocess_mode="max"
)
DEAD_LETTER = Gauge(
    "vigil_alerts_dead_letter", "dead-lettered alerts waiting for an operator (docs/runbook.md)", multiprocess_mode="max"
)
REFUSED = Counter_(
    "vigil_alert_delivery_refusals_total", "alerts Temporal refused for a reason other than an outage", ["integration"]
)
DEAD_LETTERED = Counter_(
    "vigil_alerts_dead_lettered_total", "alerts taken out of the outbox after repeated refusals", ["integration"]
)


@dataclass
class IngestResult:
    incidents: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class _StoredGroup:
    """One group of a request, stored: its incident (new or open) and what its workflow has not seen yet."""

    key: str
    batch: list[Alert]
    lead: Alert
    incident: store.OpenIncident
    upserted: store.UpsertResult
    promoted: list[int] = field(default_factory=list)  # pending rows released to the incident


@dataclass
class _Stored:
    integration: IntegrationInfo  # as it stood in the transaction (its rules may have changed since the key check)
    held: Counter[str] = field(default_factory=Counter)
    groups: list[_StoredGroup] = field(default_factory=list)


@dataclass
class Delivered:
    """What one delivery of stored alerts did."""

    delivered: int = 0
    refused: int = 0
    dead_lettered: int = 0


def _lead(batch: Sequence[Alert]) -> Alert:
    """The alert that names a new incident: the most severe firing one."""
    firing = [a for a in batch if a.status == AlertStatus.firing] or list(batch)
    return min(firing, key=lambda a: a.severity.rank)


class AlertOutbox:
    """Store, deliver, refuse, dead-letter and redeliver alerts; one per process (it caches the backlog)."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, incidents: IncidentClient,
        cache: ingest_cache.IngestCache | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.incidents = incidents
        self.cache = cache or ingest_cache.IngestCache(max_age=settings.api.key_cache_seconds)
        self._backlog_value, self._backlog_at = 0, float("-inf")

    # --- the API path ---------------------------------------------------------------------

    async def ingest(
        self, integration: IntegrationInfo, alerts: Sequence[Alert], *, check_holds: bool = True
    ) -> IngestResult:
        """Group the batch, then store and deliver each group. Stored first: if Temporal is down the
        caller answers 503, and the alerts wait in the outbox for the sender's retry or the reconciler.

        Holds and storage are one transaction (on one connection): silences and backpressure are checked, held
        alerts stored, and each group's incident joined or created with its alerts; each group is then
        delivered to Temporal outside any transaction and marked delivered in a second, short one."""
        result = IngestResult()
        stored = await asyncio.to_thread(self._store_or_fast, integration, alerts, check_holds)
        integration = stored.integration
        result.outcomes.update(stored.held)
        if stored.held[holding.SUPPRESSED]:
            SUPPRESSED.labels(integration=integration.name).inc(stored.held[holding.SUPPRESSED])
            log.warning("backpressure: info alerts suppressed", count=stored.held[holding.SUPPRESSED],
                        integration=integration.name)
        for group in stored.groups:
            number, outcomes = await self._deliver_group(integration, group)
            result.incidents.append(number)
            result.outcomes.update(outcomes)
        return result

    def _store_or_fast(self, integration: IntegrationInfo, alerts: Sequence[Alert], check_holds: bool) -> _Stored:
        """PostgreSQL, a storm's common case in one statement and one round trip (store.store_repeats): alerts of
        one group that has an open incident, none held (no silence in memory matches, no `info` alert that
        backpressure could suppress, no threshold rule), stored outside a transaction and only if the key and
        the silences are unchanged since they were read. Otherwise, or when it stored nothing (no open incident,
        a token changed), the ingest transaction (_store) on the same connection."""
        fast = self._fast_group(integration, alerts, check_holds)
        if fast is None:
            return self._store(integration, alerts, check_holds)
        key, passing, silences_token = fast
        engine = self.sessions.kw["bind"]
        try:
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                done = store.store_repeats(connection, key=key, alerts=passing, integration=integration,
                                           tokens=(integration.token, silences_token))
                connection.commit()  # nothing to commit (autocommit): ends SQLAlchemy's transaction
                self.cache.confirm(*done.tokens)
                if done.incident is not None and done.upserted is not None:
                    return _Stored(integration, groups=[_StoredGroup(key, passing, _lead(passing), done.incident,
                                                                     done.upserted)])
                connection.execution_options(isolation_level=connection.default_isolation_level)
                with self.sessions(bind=connection) as session, session.begin():
                    return self._store_work(integration, alerts, check_holds)(session)
        except DBAPIError as err:
            if not err.connection_invalidated:
                raise
            # A dead pooled connection (a database restart): the transaction runs again on a fresh one.
            log.warning("database connection lost; retrying the transaction on a new one", error=str(err.orig))
            return self._store(integration, alerts, check_holds)

    def _fast_group(
        self, integration: IntegrationInfo, alerts: Sequence[Alert], check_holds: bool
    ) -> tuple[str, list[Alert], str | None] | None:
        """The group key, the fitted alerts and the silences token they were checked under when
        store.store_repeats may take the batch; None: it may not."""
        if not alerts or self.sessions.kw["bind"].dialect.name != "postgresql":
            return None
        held_by = self.cache.fast_silences(integration)
        if held_by is None or integration.rules.threshold.count > 1:
            return None
        silences_token, silences = held_by
        passing = [fit.fit_alert(integration.rules.apply(a)) for a in alerts]
        key = integration.group_key(passing[0])
        if any(integration.group_key(a) != key for a in passing[1:]):
            return None
        if check_holds:
            if any(a.severity == Severity.info for a in passing):
                return None  # backpressure may suppress it: counted in the transaction
            now = utcnow()
            active = [(sid, matchers) for sid, starts, ends, matchers in silences if starts <= now < ends]
            if active and any(holding.matching_silence(active, a) is not None for a in passing):
                return None
        return key, passing, silences_token

    def _store(self, integration: IntegrationInfo, alerts: Sequence[Alert], check_holds: bool) -> _Stored:
        return transaction(self.sessions, self._store_work(integration, alerts, check_holds))

    def _store_work(
        self, integration: IntegrationInfo, alerts: Sequence[Alert], check_holds: bool
    ) -> Callable[[Session], _Stored]:
        """One transaction: check the key (if its integration changed since it was read), hold what is silenced,
        suppressed or pending, then store each group's alerts in its (new or open) incident, releasing the pending
        alerts a group's incident takes. Groups in key order, the one lock order for every writer (PostgreSQL
        deadlocks on crossed orders). KeyRevoked: the key is gone, nothing is stored."""

        def work(session: Session) -> _Stored:
            tokens = self.cache.read_tokens(session)  # first: the cached tables are read under these tokens
            integ = self.cache.current(session, tokens, integration)
            out = _Stored(integ)
            # Fitted after routing (a route may set the service) and before anything is stored or grouped.
            passing = [fit.fit_alert(integ.rules.apply(a)) for a in alerts]
            promoted: dict[str, list[int]] = {}
            if check_holds:
                sorted_ = holding.sort_batch(
                    session, passing, integ, backlog_limit=self.settings.ingest.backlog_limit,
                    backlog=self._backlog, silences_at=ingest_cache.active_silences(self.cache, tokens),
                )
                if sorted_.held:
                    holding.store_held(session, sorted_.held, integ)
                out.held, passing, promoted = sorted_.outcomes, sorted_.passing, sorted_.promoted
            groups: dict[str, list[Alert]] = defaultdict(list)
            for alert in passing:
                groups[integ.group_key(alert)].append(alert)
            for key, batch in sorted(groups.items()):
                lead = _lead(batch)
                incident = self._with_plan(session, store.join_or_create(session, key=key, lead=lead, integration=integ))
                upserted = store.upsert_alerts(session, number=incident.number, alerts=batch, integration=integ)
                if promoted.get(key):  # stored in the incident's outbox now: the pending rows are released to it
                    holding.mark_released(session, dict.fromkeys(promoted[key], incident.number))
                out.groups.append(_StoredGroup(key, batch, lead, incident, upserted, promoted.get(key, [])))
            return out

        return work

    async def _deliver_group(self, integration: IntegrationInfo, group: _StoredGroup) -> tuple[int, Counter[str]]:
        key, batch, lead = group.key, group.batch, group.lead
        incident, upserted = group.incident, group.upserted
        for attempt in range(MAX_JOIN_ATTEMPTS):
            if attempt:  # the incident closed under us: its group was released, and this opens the next one
                incident, upserted = await asyncio.to_thread(self._store_batch, key, lead, batch, integration)
                if group.promoted:
                    await asyncio.to_thread(self._mark_released, dict.fromkeys(group.promoted, incident.number))
            if not upserted.undelivered and not incident.created:
                return incident.number, upserted.outcomes  # pure repeats: no Temporal round trip
            try:
                done = await self._deliver_stored(integration, incident, upserted.undelivered, lead)
            except IncidentClosed:
                log.info("incident closed under us; opening a new one", incident=incident_ref(incident.number), group_key=key)
                await asyncio.to_thread(self._release, key, incident.number)
                continue
            if done.refused:  # stored: the reconciler tries again and dead-letters what keeps failing
                upserted.outcomes["undelivered"] += done.refused
            return incident.number, upserted.outcomes
        raise GroupKeptClosing(f"group {key} kept closing under us")

    async def _deliver_stored(
        self, integration: IntegrationInfo, incident: store.OpenIncident, alerts: list[Alert], lead: Alert | None = None
    ) -> Delivered:
        """Send stored alerts and mark them delivered. A batch Temporal refuses (not an outage) is retried
        alert by alert, so one alert that cannot be delivered never holds back the others; each refusal is
        counted against its alert, which is dead-lettered (and the operator paged) past the limit."""
        done = Delivered()
        try:
            await self._send(integration, incident, alerts, lead or _lead(alerts))
        except (IncidentClosed, TemporalUnavailable, WorkflowTimeout):
            raise
        except Exception as err:  # noqa: BLE001 - whatever else a refusal is, it must not block the outbox
            if is_outage(err):
                raise
            if len(alerts) > 1:
                log.warning("batch refused; delivering its alerts one by one", incident=incident_ref(incident.number),
                            alerts=len(alerts), error=str(err))
                for alert in alerts:
                    one = await self._deliver_stored(integration, incident, [alert], alert)
                    done.delivered += one.delivered
                    done.refused += one.refused
                    done.dead_lettered += one.dead_lettered
                    incident = _started(incident)
                return done
            await self._refused(integration, incident, alerts[0], err, done)
            return done
        await asyncio.to_thread(self._mark_delivered, incident.number, alerts)
        done.delivered = len(alerts)
        return done

    async def _refused(
        self, integration: IntegrationInfo, incident: store.OpenIncident, alert: Alert, err: Exception, done: Delivered
    ) -> None:
        error = f"{type(err).__name__}: {err}"
        REFUSED.labels(integration=integration.name).inc()
        log.error("alert refused by Temporal", incident=incident_ref(incident.number), fingerprint=alert.fingerprint,
                  integration=integration.name, error=error)
        dead = await asyncio.to_thread(self._record_refusal, incident.number, alert, error)
        done.refused += 1
        for row_id, _ in dead:
            done.dead_lettered += 1
            DEAD_LETTERED.labels(integration=integration.name).inc()
            log.critical("alert dead-lettered", incident=incident_ref(incident.number), alert_id=row_id,
                         fingerprint=alert.fingerprint, integration=integration.name, error=error)
            if integration.kind == INTERNAL_KIND:
                continue  # the operator's own page could not be delivered: paging about it would loop
            await self.page_operator(
                key=f"dead-letter/{row_id}",
                summary=f"Alert {row_id} for {incident_ref(incident.number)} could not be delivered: dead-lettered",
                details={
                    "incident": workflow_id(incident.number),
                    "alert_id": str(row_id),
                    "fingerprint": alert.fingerprint,
                    "integration": integration.name,
                    "error": error,
                    "runbook": "docs/runbook.md#dead-lettered-alerts",
                },
            )

    def _record_refusal(self, number: int, alert: Alert, error: str) -> list[tuple[int, Alert]]:
        with self.sessions.begin() as session:
            return store.record_refusal(
                session, number=number, alerts=[alert], error=error,
                dead_letter_after=self.settings.ingest.dead_letter_after,
            )

    # --- paging the operator -----------------------------------------------------------------

    async def page_operator(self, *, key: str, summary: str, details: dict[str, str]) -> int | None:
        """Raise a problem of Vigil itself as a critical alert of the built-in `vigil` integration, so the
        operator's on-call is paged by the usual routing (service `vigil`). `key` dedups repeats. Returns the
        incident number, or None while Temporal is down (the alert is stored; the reconciler delivers it)."""
        integration = await asyncio.to_thread(self._operator_integration)
        alert = Alert(
            fingerprint=f"vigil/{key}", summary=summary, severity=Severity.critical, service=OPERATOR_SERVICE,
            source="vigil", labels={"alertname": OPERATOR_ALERTNAME, "service": OPERATOR_SERVICE},
            annotations=details,
        )
        try:
            result = await self.ingest(integration, [alert])
        except (TemporalUnavailable, WorkflowTimeout, GroupKeptClosing) as err:
            log.error("operator alert stored; delivery waits for Temporal", key=key, error=str(err))
            return None
        log.warning("operator paged", key=key, summary=summary, incidents=result.incidents)
        return result.incidents[0] if result.incidents else None

    def _operator_integration(self) -> IntegrationInfo:
        with self.sessions.begin() as session:
            return IntegrationInfo.of(store.operator_integration(session))

    def _backlog(self, session: Session) -> int:
        """The outbox size, re-counted at most every BACKLOG_TTL seconds: it is a full count, and
        backpressure only needs to know roughly when the backlog passes its limit."""
        now = time.monotonic()
        if now - self._backlog_at > BACKLOG_TTL:
            self._backlog_value, self._backlog_at = holding.backlog(session), now
        return self._backlog_value

    def _store_batch(
        self, key: str, lead: Alert, batch: list[Alert], integration: IntegrationInfo
    ) -> tuple[store.OpenIncident, store.UpsertResult]:
        # One transaction: a new incident's row is committed with its alerts or not at all, so the outbox
        # (alerts not yet delivered) always covers an incident whose workflow has not started.
        def work(session: Session) -> tuple[store.OpenIncident, store.UpsertResult]:
            incident = self._with_plan(session, store.join_or_create(session, key=key, lead=lead, integration=integration))
            return incident, store.upsert_alerts(session, number=incident.number, alerts=batch, integration=integration)

        return transaction(self.sessions, work)

    def _with_plan(self, session: Session, incident: store.OpenIncident) -> store.OpenIncident:
        """A new incident with its escalation policy frozen now, in the transaction that creates its row, so its
        workflow pages without a freeze activity first (IncidentInput.plan). Any database error leaves the plan
        to the workflow (None) and the transaction intact (a savepoint): the alert is never refused for it."""
        if not incident.created:
            return incident
        try:
            with session.begin_nested():
                plan = policies.freeze_policy(session=session, service=incident.service, severity=incident.severity,
                                              default=default_plan(self.settings.escalation))
        except SQLAlchemyError as err:
            log.warning("escalation policy not frozen at intake; the workflow freezes it",
                        incident=incident_ref(incident.number), error=str(err))
            return incident
        return dataclasses.replace(incident, plan=plan)

    def _release(self, key: str, number: int) -> None:
        with self.sessions.begin() as session:
            store.release_group(session, key=key, number=number)

    def _mark_delivered(self, number: int, alerts: Sequence[Alert]) -> None:
        transaction(self.sessions, lambda session: store.mark_delivered(session, number=number, alerts=alerts))

    async def _send(
        self, integration: IntegrationInfo, incident: store.OpenIncident, alerts: list[Alert], lead: Alert
    ) -> None:
        """Hand the batch to INC-<n> in chunks that each fit in one Temporal payload."""
        for chunk in fit.chunks(alerts):
            await self.incidents.open_or_add(incident, integration, chunk, lead)
            incident = _started(incident)

    # --- the outbox reconciler ---------------------------------------------------------------

    async def redeliver(self, *, max_incidents: int = 200) -> RedeliveryResult:
        """Deliver every stored-but-undelivered alert: oldest first, one update per incident.

        Runs from the reconciler every few seconds, so alerts accepted while Temporal was down reach their
        incidents even if the sender never retries. A second delivery of the same alert is a no-op in the workflow.
        Each incident is delivered on its own: a refusal is isolated to its alert (and dead-lettered past
        the limit), and an incident whose workflow does not answer waits for the next run. Only a Temporal
        outage stops the run, since then every delivery would fail alike.
        """
        result = RedeliveryResult()
        await self._release_silenced(max_incidents, result)
        gate = asyncio.Semaphore(REDELIVERY_CONCURRENCY)

        async def one(incident: store.OpenIncident, integration: IntegrationInfo) -> None:
            async with gate:
                await self._redeliver_incident(incident, integration, result)

        outbox = await asyncio.to_thread(self._outbox, max_incidents)
        # Every incident's delivery finishes (none is left running behind the caller's back); then the first
        # outage, if any, is raised for the reconciler to see.
        done = await asyncio.gather(*(one(i, integ) for i, integ in outbox), return_exceptions=True)
        failed = [err for err in done if isinstance(err, BaseException)]
        if failed:
            raise failed[0]
        return result

    async def _redeliver_incident(
        self, incident: store.OpenIncident, integration: IntegrationInfo, result: RedeliveryResult
    ) -> None:
        alerts = await asyncio.to_thread(self._undelivered, incident.number)
        if not alerts:
            return
        result.incidents += 1
        try:
            done = await self._deliver_stored(integration, incident, alerts)
        except IncidentClosed:
            # It closed before these arrived: they belong to the group's next incident.
            await asyncio.to_thread(self._release, incident.group_key, incident.number)
            await self.ingest(integration, alerts)
            await asyncio.to_thread(self._mark_delivered, incident.number, alerts)
            result.rerouted += len(alerts)
            log.info("outbox rerouted", incident=incident_ref(incident.number), alerts=len(alerts))
            return
        except WorkflowTimeout as err:
            result.waiting += len(alerts)
            log.warning("outbox: workflow did not answer; next run", incident=incident_ref(incident.number), error=str(err))
            return
        result.delivered += done.delivered
        result.refused += done.refused
        result.dead_lettered += done.dead_lettered
        log.info("outbox redelivered", incident=incident_ref(incident.number), alerts=done.delivered, refused=done.refused)

    async def _release_silenced(self, limit: int, result: RedeliveryResult) -> None:
        """A silence ended while its alert still fires: the incident opens now."""
        for held, integration, alert in await asyncio.to_thread(self._releasable, limit):
            ingested = await self.ingest(integration, [alert], check_holds=False)
            await asyncio.to_thread(self._mark_released, {held: ingested.incidents[0]})
            result.released += 1
            log.info("silence ended; alert released", incident=incident_ref(ingested.incidents[0]),
                     fingerprint=alert.fingerprint)

    def _releasable(self, limit: int) -> list[tuple[int, IntegrationInfo, Alert]]:
        with self.sessions() as session:
            out = []
            for row, alert in holding.releasable(session, limit=limit):
                integ = session.get_one(Integration, row.integration_id)
                out.append((row.id, IntegrationInfo.of(integ), alert))
            return out

    def _mark_released(self, released: dict[int, int]) -> None:
        with self.sessions.begin() as session:
            holding.mark_released(session, released)

    async def observe(self) -> store.OutboxCounts:
        """Set the outbox gauges (the worker's /metrics) from one count."""
        counts = await asyncio.to_thread(self._outbox_counts)
        OUTBOX.set(counts.undelivered)
        DEAD_LETTER.set(counts.dead_lettered)
        return counts

    def _outbox_counts(self) -> store.OutboxCounts:
        with self.sessions() as session:
            return store.outbox_counts(session)

    def _outbox(self, limit: int) -> list[tuple[store.OpenIncident, IntegrationInfo]]:
        with self.sessions() as session:
            return [
                (
                    store.OpenIncident(
                        incident.number, False, incident.group_key, incident.service, Severity(incident.severity),
                        incident.title,
                    ),
                    IntegrationInfo.of(integ),
                )
                for incident, integ in session.execute(
                    select(Incident, Integration)
                    .join(Integration, Integration.id == Incident.integration_id)
                    .where(Incident.number.in_(store.outbox_incidents(session, limit=limit)))
                    .order_by(Incident.number)
                )
            ]

    def _undelivered(self, number: int) -> list[Alert]:
        with self.sessions() as session:
            # Fitted again: rows stored before Vigil fitted alerts at the door may still be too large.
            return [fit.fit_alert(a, keep_fingerprint=True) for a in store.undelivered(session, number=number)]

def _started(incident: store.OpenIncident) -> store.OpenIncident:
    """The same incident once its workflow has been started: later sends go as updates."""
    return dataclasses.replace(incident, created=False) if incident.created else incident
