"""A source acknowledging or resolving by dedup key (PagerDuty Events v2), through IncidentClient."""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session, sessionmaker

from client.errors import IncidentClosed, NotStarted, TransitionRefused
from client.incidents import IncidentClient
from vigil.contracts import AcknowledgeInput, Actor, ActorKind, Alert, IncidentStatus
from vigil.ingest import fit, holding, store
from vigil.ingest.store import IntegrationInfo


class DedupKeys:
    def __init__(self, sessions: sessionmaker[Session], incidents: IncidentClient) -> None:
        self.sessions = sessions
        self.incidents = incidents

    async def resolve(self, integration: IntegrationInfo, dedup_key: str) -> int | None:
        """The alert is resolved at its source; the workflow decides about the incident."""
        found = await asyncio.to_thread(self._resolve_row, integration, fit.fit_fingerprint(dedup_key))
        if found is None:
            return None
        number, alert = found
        try:
            await self.incidents.add_alerts(number, [alert])
        except (IncidentClosed, NotStarted):
            # No workflow takes it: not started yet (the outbox delivers the resolved status with its start),
            # closed, or ended outside Vigil (the reconciler reports it). The row says resolved either way.
            return number
        await asyncio.to_thread(self._mark_delivered, number, alert)
        return number

    async def acknowledge(self, integration: IntegrationInfo, dedup_key: str) -> int | None:
        """Acknowledges the incident holding that alert; a repeat is a no-op. NotStarted: retry shortly."""
        number = await asyncio.to_thread(self._open_incident_of, integration, fit.fit_fingerprint(dedup_key))
        if number is None:
            return None
        actor = Actor(kind=ActorKind.source, name=integration.name)
        try:
            await self.incidents.acknowledge(number, AcknowledgeInput(actor=actor, note=f"Acknowledged by {integration.name}"))
        except IncidentClosed:
            return None  # closed since the alert was read: nothing to acknowledge
        except TransitionRefused as err:
            # Acknowledged already (a repeat); or its workflow ended outside Vigil (the reconciler reports it).
            return None if err.current == IncidentStatus.ended else number
        except NotStarted:
            if await asyncio.to_thread(self._never_delivered, number):
                raise
            return None  # no workflow, though alerts were delivered: it ended outside Vigil (the reconciler reports it)
        return number

    def _resolve_row(self, integration: IntegrationInfo, dedup_key: str) -> tuple[int, Alert] | None:
        with self.sessions.begin() as session:
            found = store.resolve_by_fingerprint(session, integration=integration, fingerprint=dedup_key)
            if found is None:
                holding.resolve_held(session, integration=integration, fingerprint=dedup_key)
            return found

    def _mark_delivered(self, number: int, alert: Alert) -> None:
        with self.sessions.begin() as session:
            store.mark_delivered(session, number=number, alerts=[alert])

    def _never_delivered(self, number: int) -> bool:
        with self.sessions() as session:
            return not store.has_delivered(session, number=number)

    def _open_incident_of(self, integration: IntegrationInfo, dedup_key: str) -> int | None:
        with self.sessions() as session:
            row = store.open_alert(session, integration=integration, fingerprint=dedup_key)
            return row.incident_number if row else None
