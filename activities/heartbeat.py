"""A missed heartbeat becomes an alert of the built-in `vigil heartbeats` integration, through the alert outbox
like any other alert (stored first, grouped, routed, paged); the next check-in resolves it by its fingerprint, as
a PagerDuty `resolve` does, which auto-resolves the incident like any alert resolved at its source."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from vigil.contracts import (
    HEARTBEAT_ALERTNAME,
    Alert,
    AlertStatus,
    HeartbeatAlertInput,
    HeartbeatAlertResult,
    heartbeat_fingerprint,
    heartbeat_workflow_id,
)
from vigil.ingest.store import IntegrationInfo, insert_for
from vigil.logging import get_logger
from vigil.models import HeartbeatMonitor, Integration, utcnow

log = get_logger(__name__)
HEARTBEAT_KIND = "heartbeat"
HEARTBEAT_INTEGRATION = "vigil heartbeats"


class Ingested(Protocol):
    incidents: list[int]


class AlertIngest(Protocol):
    """What these activities ask of the alert outbox (client.outbox.AlertOutbox, built in worker.py)."""

    async def ingest(self, integration: IntegrationInfo, alerts: Sequence[Alert]) -> Ingested: ...


class AlertResolve(Protocol):
    """Resolve by fingerprint (client.dedup_keys.DedupKeys, built in worker.py)."""

    async def resolve(self, integration: IntegrationInfo, dedup_key: str) -> int | None: ...


def heartbeat_integration(session: Session) -> Integration:
    """The built-in integration missed heartbeats arrive through; created on first use, auto-resolving."""
    query = select(Integration).where(Integration.kind == HEARTBEAT_KIND).order_by(Integration.id).limit(1)
    if (row := session.scalar(query)) is not None:
        return row
    # Nobody sends with this key: a random one, never shown.
    session.execute(
        insert_for(session, Integration).values(
            name=HEARTBEAT_INTEGRATION, kind=HEARTBEAT_KIND, prefix="heartbeat",
            key_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(), auto_resolve=True,
            hold_resolution_seconds=0, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["name"])
    )
    if (row := session.scalar(query)) is None:
        raise RuntimeError(f"an integration named {HEARTBEAT_INTEGRATION!r} exists and is not Vigil's own; rename it")
    return row


def heartbeat_alert(inp: HeartbeatAlertInput) -> Alert:
    """The firing alert of one missed episode."""
    c = inp.config
    silent = int((inp.at - inp.since).total_seconds())
    return Alert(
        fingerprint=heartbeat_fingerprint(inp.monitor_id, inp.episode), status=AlertStatus.firing,
        summary=f"Heartbeat {c.name!r} missed: no check-in for {silent} s (every {c.interval_seconds} s "
                f"+ {c.grace_seconds} s grace)",
        severity=c.severity, service=c.service, source="heartbeat",
        labels={"alertname": HEARTBEAT_ALERTNAME, "service": c.service, "heartbeat": c.name},
        annotations={
            "description": f"No check-in from {c.name!r} since {inp.since.isoformat()}.",
            "monitor_id": str(inp.monitor_id), "workflow": heartbeat_workflow_id(inp.monitor_id),
        },
        starts_at=inp.since + c.period,
    )


class HeartbeatActivities:
    def __init__(self, sessions: sessionmaker[Session], outbox: AlertIngest, resolver: AlertResolve) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.resolver = resolver

    @activity.defn
    async def open_heartbeat_alert(self, inp: HeartbeatAlertInput) -> HeartbeatAlertResult:
        """Fire the missed-heartbeat alert (a retry is a repeat of the same fingerprint: no second page)."""
        integration = await asyncio.to_thread(self._integration)
        # Outages (Temporal, the database) raise: the activity retries, and the stored alert is not sent twice.
        result = await self.outbox.ingest(integration, [heartbeat_alert(inp)])
        return await self._done(inp, list(result.incidents))

    @activity.defn
    async def resolve_heartbeat_alert(self, inp: HeartbeatAlertInput) -> HeartbeatAlertResult:
        """Resolve the episode's alert: the monitor checked in again (or was deleted)."""
        integration = await asyncio.to_thread(self._integration)
        # By fingerprint, never through ingest: a resolved alert whose incident is closed must not open a new one.
        number = await self.resolver.resolve(integration, heartbeat_fingerprint(inp.monitor_id, inp.episode))
        return await self._done(inp, [] if number is None else [number])

    async def _done(self, inp: HeartbeatAlertInput, incidents: list[int]) -> HeartbeatAlertResult:
        await asyncio.to_thread(self._record, inp, incidents)
        log.info("heartbeat alert", monitor=inp.monitor_id, status=inp.status.value, episode=inp.episode,
                 incidents=incidents, workflow_id=heartbeat_workflow_id(inp.monitor_id))
        return HeartbeatAlertResult(incidents=incidents)

    def _integration(self) -> IntegrationInfo:
        with self.sessions.begin() as session:
            return IntegrationInfo.of(heartbeat_integration(session))

    def _record(self, inp: HeartbeatAlertInput, incidents: list[int]) -> None:
        with self.sessions.begin() as session:
            row = session.get(HeartbeatMonitor, inp.monitor_id)
            if row is None:
                return  # deleted meanwhile: the alert still went through, nothing to show it on
            if inp.status == AlertStatus.firing:
                row.down_since, row.misses = inp.at, inp.episode
                row.incident_number = incidents[0] if incidents else row.incident_number
            else:
                row.down_since = None
