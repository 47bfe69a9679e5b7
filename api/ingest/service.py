"""Ingestion: store alerts durably, then hand only what is new to the group's workflow (update-with-start)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, IntegrationInfo, within_deadline
from api.errors import ApiError
from api.ingest import store
from vigil import search_attributes as sa
from vigil.contracts import AcknowledgeInput, Actor, ActorKind, AddAlertsInput, Alert, AlertStatus, IncidentInput, workflow_id
from vigil.logging import get_logger
from vigil.normalize import alertname, group_key
from workflows.incident import IncidentWorkflow

log = get_logger(__name__)
MAX_JOIN_ATTEMPTS = 3


@dataclass
class IngestResult:
    incidents: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


class IncidentClosedError(Exception):
    """The group's incident stopped taking alerts between our read and our update."""


async def ingest(state: AppState, integration: IntegrationInfo, alerts: Sequence[Alert]) -> IngestResult:
    """Group the batch, then deliver each group; 503 (nothing lost: everything is stored) if Temporal is down."""
    groups: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        groups[group_key(alert)].append(alert)
    result = IngestResult()
    for key, batch in groups.items():
        number, outcomes = await _deliver_group(state, integration, key, batch)
        result.incidents.append(number)
        result.outcomes.update(outcomes)
    return result


def _lead(batch: Sequence[Alert]) -> Alert:
    """The alert that names a new incident: the most severe firing one."""
    firing = [a for a in batch if a.status == AlertStatus.firing] or list(batch)
    return min(firing, key=lambda a: a.severity.rank)


async def _deliver_group(
    state: AppState, integration: IntegrationInfo, key: str, batch: list[Alert]
) -> tuple[int, Counter[str]]:
    lead = _lead(batch)
    for _ in range(MAX_JOIN_ATTEMPTS):
        # Stored first: if Temporal is down the sender gets 503 and the alert waits in the outbox.
        incident, upserted = await asyncio.to_thread(_store_batch, state, key, lead, batch, integration)
        if not upserted.undelivered and not incident.created:
            return incident.number, upserted.outcomes  # pure repeats: no Temporal round trip
        client = await state.temporal_client()
        try:
            await _send(state, client, integration, incident, upserted.undelivered, lead)
        except IncidentClosedError:
            log.info("incident closed under us; opening a new one", incident=f"INC-{incident.number}", group_key=key)
            await asyncio.to_thread(_release, state, key, incident.number)
            continue
        await asyncio.to_thread(_mark_delivered, state, incident.number, upserted.undelivered)
        return incident.number, upserted.outcomes
    raise ApiError(503, "conflict_retry", f"group {key} kept closing under us; retry", headers={"Retry-After": "1"})


def _store_batch(
    state: AppState, key: str, lead: Alert, batch: list[Alert], integration: IntegrationInfo
) -> tuple[store.OpenIncident, store.UpsertResult]:
    with state.sessions.begin() as session:
        incident = store.join_or_create(session, key=key, lead=lead, integration=integration)
    with state.sessions.begin() as session:
        upserted = store.upsert_alerts(session, number=incident.number, alerts=batch, integration=integration)
    return incident, upserted


def _release(state: AppState, key: str, number: int) -> None:
    with state.sessions.begin() as session:
        store.release_group(session, key=key, number=number)


def _mark_delivered(state: AppState, number: int, alerts: Sequence[Alert]) -> None:
    with state.sessions.begin() as session:
        store.mark_delivered(session, number=number, alerts=alerts)


def _static_details(incident: store.OpenIncident, lead: Alert, integration: IntegrationInfo, public_url: str) -> str:
    labels = "\n".join(f"- `{k}` = `{v}`" for k, v in sorted(lead.labels.items()))
    return (
        f"### INC-{incident.number}: {incident.title}\n\n"
        f"- **Service:** {incident.service}\n- **Severity:** {incident.severity.value}\n"
        f"- **Group key:** `{incident.group_key}`\n- **Integration:** {integration.name}\n"
        f"- **API:** {public_url}/api/v1/incidents/INC-{incident.number}\n\n"
        f"**First alert labels**\n\n{labels}\n"
    )


async def _send(
    state: AppState,
    client: Client,
    integration: IntegrationInfo,
    incident: store.OpenIncident,
    alerts: list[Alert],
    lead: Alert,
) -> None:
    """Update-with-start: starts INC-<n> if needed and hands it the batch, atomically."""
    s = state.settings
    wid = workflow_id(incident.number)
    start = WithStartWorkflowOperation(
        IncidentWorkflow.run,
        IncidentInput(
            number=incident.number,
            group_key=incident.group_key,
            service=incident.service,
            severity=incident.severity,
            title=incident.title,
            integration_id=integration.id,
            integration_name=integration.name,
            auto_resolve=integration.auto_resolve,
            reopen_window_seconds=s.core.reopen_window_seconds,
            public_url=s.core.public_url,
            temporal_ui_url=s.temporal.ui_url,
            namespace=s.temporal.namespace,
        ),
        id=wid,
        task_queue=s.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed INC-<n> must never be started again under the same number.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.INCIDENT_NUMBER, wid),
                SearchAttributePair(sa.INCIDENT_STATUS, "triggered"),
                SearchAttributePair(sa.SEVERITY, incident.severity.value),
                SearchAttributePair(sa.SERVICE, incident.service),
                SearchAttributePair(sa.GROUP_KEY, incident.group_key),
            ]
        ),
        static_summary=f"{wid} [{incident.severity.value}] {incident.service}: {alertname(lead)}",
        static_details=_static_details(incident, lead, integration, s.core.public_url),
    )
    try:
        await within_deadline(
            state,
            client.execute_update_with_start_workflow(
                IncidentWorkflow.add_alerts, AddAlertsInput(alerts=alerts), start_workflow_operation=start
            ),
        )
    except WorkflowUpdateFailedError as err:
        if isinstance(err.cause, ApplicationError) and err.cause.type == "IncidentClosed":
            raise IncidentClosedError from err
        raise
    except WorkflowAlreadyStartedError as err:
        raise IncidentClosedError from err
    except RPCError as err:
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            raise IncidentClosedError from err
        raise


async def resolve_by_dedup_key(state: AppState, integration: IntegrationInfo, dedup_key: str) -> int | None:
    """PagerDuty `resolve`: the alert is resolved at its source; the workflow decides about the incident."""
    found = await asyncio.to_thread(_resolve_row, state, integration, dedup_key)
    if found is None:
        return None
    number, alert = found
    client = await state.temporal_client()
    try:
        await within_deadline(
            state,
            client.get_workflow_handle(workflow_id(number)).execute_update(
                IncidentWorkflow.add_alerts, AddAlertsInput(alerts=[alert])
            ),
        )
    except WorkflowUpdateFailedError as err:
        if isinstance(err.cause, ApplicationError) and err.cause.type == "IncidentClosed":
            return number
        raise
    await asyncio.to_thread(_mark_delivered, state, number, [alert])
    return number


def _resolve_row(state: AppState, integration: IntegrationInfo, dedup_key: str) -> tuple[int, Alert] | None:
    with state.sessions.begin() as session:
        return store.resolve_by_fingerprint(session, integration=integration, fingerprint=dedup_key)


async def acknowledge_by_dedup_key(state: AppState, integration: IntegrationInfo, dedup_key: str) -> int | None:
    """PagerDuty `acknowledge`: acknowledges the incident holding that alert; a repeat is a no-op."""
    number = await asyncio.to_thread(_open_incident_of, state, integration, dedup_key)
    if number is None:
        return None
    client = await state.temporal_client()
    actor = Actor(kind=ActorKind.source, name=integration.name)
    try:
        await within_deadline(
            state,
            client.get_workflow_handle(workflow_id(number)).execute_update(
                IncidentWorkflow.acknowledge, AcknowledgeInput(actor=actor, note=f"Acknowledged by {integration.name}")
            ),
        )
    except WorkflowUpdateFailedError as err:
        if not (isinstance(err.cause, ApplicationError) and err.cause.type == "InvalidTransition"):
            raise
    return number


def _open_incident_of(state: AppState, integration: IntegrationInfo, dedup_key: str) -> int | None:
    with state.sessions() as session:
        row = store.open_alert(session, integration=integration, fingerprint=dedup_key)
        return row.incident_number if row else None
