"""The API's side of ingestion: the shared Delivery, with its refusals turned into HTTP answers."""

from __future__ import annotations

from collections.abc import Sequence

from api.deps import AppState
from api.errors import ApiError
from vigil.contracts import Alert
from vigil.ingest.delivery import GroupKeptClosing, IncidentNotStarted, IngestResult
from vigil.ingest.store import IntegrationInfo


async def ingest(state: AppState, integration: IntegrationInfo, alerts: Sequence[Alert]) -> IngestResult:
    try:
        return await state.delivery.ingest(integration, alerts)
    except GroupKeptClosing as err:
        raise ApiError(503, "conflict_retry", f"{err}; retry", headers={"Retry-After": "1"}) from err



async def acknowledge_by_dedup_key(state: AppState, integration: IntegrationInfo, dedup_key: str) -> int | None:
    try:
        return await state.delivery.acknowledge_by_dedup_key(integration, dedup_key)
    except IncidentNotStarted as err:
        raise ApiError(503, "incident_not_started", str(err), headers={"Retry-After": "5"}) from err
