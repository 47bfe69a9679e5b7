"""API-side Prometheus metrics, served on GET /metrics."""

from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import Counter

from client.errors import TransitionRefused

T = TypeVar("T")

INGEST_REQUESTS = Counter("vigil_ingest_requests_total", "Ingestion requests by endpoint and HTTP status", ["endpoint", "status"])
ALERTS_INGESTED = Counter(
    "vigil_alerts_ingested_total", "Alerts received, by endpoint and outcome (new, changed, repeat)", ["endpoint", "outcome"]
)
API_TRANSITIONS = Counter(
    "vigil_api_transitions_total", "Transitions requested through the API, by transition and outcome", ["transition", "outcome"]
)


async def counted(transition: str, call: Awaitable[T]) -> T:
    """Await an IncidentClient transition, counting it as ok or refused (by the state machine, or closed)."""
    try:
        result = await call
    except TransitionRefused:
        API_TRANSITIONS.labels(transition=transition, outcome="refused").inc()
        raise
    API_TRANSITIONS.labels(transition=transition, outcome="ok").inc()
    return result
