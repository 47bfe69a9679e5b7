"""The API's side of ingestion: the shared Delivery, with its refusals turned into HTTP answers."""

from __future__ import annotations

from collections.abc import Sequence

from api.deps import AppState
from api.errors import ApiError
from vigil.contracts import Alert
from vigil.ingest.delivery import GroupKeptClosing, IngestResult
from vigil.ingest.store import IntegrationInfo


async def ingest(state: AppState, integration: IntegrationInfo, alerts: Sequence[Alert]) -> IngestResult:
    try:
        return await state.delivery.ingest(integration, alerts)
    except GroupKeptClosing as err:
        raise ApiError(503, "conflict_retry", f"{err}; retry", headers={"Retry-After": "1"}) from err

