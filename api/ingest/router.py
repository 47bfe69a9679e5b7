"""POST /v2/enqueue and /v2/change/enqueue (PagerDuty Events v2) and POST /api/v1/integrations/alertmanager."""

from __future__ import annotations

import hashlib
import json

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, status

from api.deps import AppState, BearerIntegration, DedupKeysDep, OutboxDep, RoutingKeyIntegration, StateDep, key_revoked
from api.errors import ERROR_RESPONSES, ApiError
from api.ingest import pagerduty
from api.ingest.schemas import (
    AlertmanagerWebhook,
    IngestResponse,
    PagerDutyChangeEvent,
    PagerDutyChangeResponse,
    PagerDutyEvent,
    PagerDutyResponse,
)
from api.metrics import ALERTS_INGESTED
from client.outbox import AlertOutbox, IngestResult
from vigil.contracts import Alert, incident_ref
from vigil.ingest.cache import KeyRevoked
from vigil.ingest.fit import clean, clean_tree
from vigil.ingest.store import IntegrationInfo
from vigil.changes import routed_service
from vigil.logging import get_logger
from vigil.models import ChangeEvent, utcnow
from vigil.normalize import from_alertmanager, from_pagerduty

router = APIRouter(tags=["ingestion"], responses={k: ERROR_RESPONSES[k] for k in (401, 413, 422, 503)})
# PagerDuty's endpoints answer a refused event in PagerDuty's body (api/ingest/pagerduty.py).
pagerduty_router = APIRouter(
    tags=["ingestion"], route_class=pagerduty.PagerDutyRoute,
    responses={**pagerduty.RESPONSES, **{k: ERROR_RESPONSES[k] for k in (413, 503)}},
)
log = get_logger(__name__)
MAX_CHANGE_LINKS = 20


@pagerduty_router.post(
    "/v2/enqueue", status_code=status.HTTP_202_ACCEPTED, response_model=PagerDutyResponse,
    openapi_extra=pagerduty.OPENAPI_EXTRA,
)
async def enqueue(
    event: PagerDutyEvent, integration: RoutingKeyIntegration, outbox: OutboxDep, dedup_keys: DedupKeysDep
) -> PagerDutyResponse:
    """PagerDuty Events API v2 compatible: trigger, acknowledge and resolve by `dedup_key`."""
    emit = log.info
    if event.event_action == "trigger":
        assert event.payload is not None
        p = event.payload
        dedup_key = event.dedup_key or _derived_dedup_key(event)
        details = p.custom_details if isinstance(p.custom_details, dict) else (
            {"details": p.custom_details} if p.custom_details else None
        )
        alert = from_pagerduty(
            dedup_key=dedup_key, summary=p.summary, source=p.source, severity=p.severity, component=p.component,
            group=p.group, klass=p.class_, custom_details=details, timestamp=p.timestamp, client_url=event.client_url,
            links=(event.model_extra or {}).get("links"), images=(event.model_extra or {}).get("images"),
        )
        result = await _ingest(outbox, integration, [alert])
        _count("enqueue", result.outcomes)
        emit = _log_for(result)
        if result.incidents:
            message = f"Event processed: {incident_ref(result.incidents[0])}"
        else:  # held: silenced or suppressed, stored and visible in GET /api/v1/alerts
            message = f"Event processed: alert {next(iter(result.outcomes))}"
    elif event.event_action == "acknowledge":
        assert event.dedup_key
        dedup_key = event.dedup_key
        number = await dedup_keys.acknowledge(integration, dedup_key)
        message = f"Event processed: {incident_ref(number)} acknowledged" if number else "Event processed: no open alert with this dedup_key"
    else:
        assert event.dedup_key
        dedup_key = event.dedup_key
        number = await dedup_keys.resolve(integration, dedup_key)
        message = f"Event processed: alert resolved in {incident_ref(number)}" if number else "Event processed: no open alert with this dedup_key"
    emit("pagerduty event", action=event.event_action, dedup_key=dedup_key, integration=integration.name)
    return PagerDutyResponse(message=message, dedup_key=dedup_key)


def _derived_dedup_key(event: PagerDutyEvent) -> str:
    """PagerDuty generates a key when none is sent; ours is stable so a retried request dedups."""
    assert event.payload is not None
    basis = json.dumps([event.payload.source, event.payload.summary, event.payload.component], sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


@pagerduty_router.post(
    "/v2/change/enqueue", status_code=status.HTTP_202_ACCEPTED, response_model=PagerDutyChangeResponse,
    openapi_extra=pagerduty.OPENAPI_EXTRA,
)
async def change_enqueue(
    event: PagerDutyChangeEvent, integration: RoutingKeyIntegration, state: StateDep
) -> PagerDutyChangeResponse:
    """PagerDuty change events (deploys, config changes): stored, then shown on the incidents of their service."""
    change_id = await asyncio.to_thread(_store_change, state, integration, event)
    log.info("change event", change=change_id, integration=integration.name)
    return PagerDutyChangeResponse(id=change_id)


def _store_change(state: AppState, integration: IntegrationInfo, event: PagerDutyChangeEvent) -> int:
    p = event.payload
    details = p.custom_details if isinstance(p.custom_details, dict) else (
        {"details": p.custom_details} if p.custom_details else {}
    )
    details = clean_tree(details)
    assert isinstance(details, dict)
    source = clean(p.source) if p.source else None
    row = ChangeEvent(
        integration_id=integration.id, service=routed_service(integration.rules, source=source, custom_details=details),
        summary=clean(p.summary), source=source, at=p.timestamp or utcnow(), received_at=utcnow(),
        custom_details=details,
        links=[clean_tree(link.model_dump(include={"href", "text"}, exclude_none=True))
               for link in event.links[:MAX_CHANGE_LINKS]],
    )
    with state.sessions.begin() as session:
        session.add(row)
        session.flush()
        return row.id


@router.post("/api/v1/integrations/alertmanager", status_code=status.HTTP_202_ACCEPTED, response_model=IngestResponse)
async def alertmanager(
    body: AlertmanagerWebhook, state: StateDep, integration: BearerIntegration, outbox: OutboxDep
) -> IngestResponse:
    """Alertmanager webhook v4 with `Authorization: Bearer <integration key>`."""
    cap = state.settings.api.max_alerts_per_request
    if len(body.alerts) > cap:
        raise ApiError(
            413, "payload_too_large", f"{len(body.alerts)} alerts in one request; the limit is {cap} "
            "(set `max_alerts` in Alertmanager's webhook_config)", {"alerts": len(body.alerts), "limit": cap},
        )
    alerts = [from_alertmanager(a.model_dump(), body.commonLabels, body.externalURL) for a in body.alerts]
    result = await _ingest(outbox, integration, alerts)
    _count("alertmanager", result.outcomes)
    _log_for(result)("alertmanager webhook", alerts=len(alerts), integration=integration.name,
                     incidents=result.incidents, outcomes=dict(result.outcomes))
    return IngestResponse(
        alerts=len(alerts), incidents=[incident_ref(n) for n in result.incidents], outcomes=dict(result.outcomes)
    )


async def _ingest(outbox: AlertOutbox, integration: IntegrationInfo, alerts: list[Alert]) -> IngestResult:
    try:
        return await outbox.ingest(integration, alerts)
    except KeyRevoked:
        raise key_revoked() from None


def _log_for(result: IngestResult) -> Callable[..., None]:
    """A request of repeats only (a storm's bulk: counters bumped, nothing for a workflow) is logged at debug;
    one with anything new, changed, held or undelivered at info. The access log has every request either way."""
    return log.info if any(n for outcome, n in result.outcomes.items() if outcome != "repeat") else log.debug


def _count(endpoint: str, outcomes: dict[str, int]) -> None:
    for outcome, n in outcomes.items():
        ALERTS_INGESTED.labels(endpoint=endpoint, outcome=outcome).inc(n)


router.include_router(pagerduty_router)
