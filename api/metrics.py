"""API-side Prometheus metrics, served on GET /metrics."""

from prometheus_client import Counter

INGEST_REQUESTS = Counter("vigil_ingest_requests_total", "Ingestion requests by endpoint and HTTP status", ["endpoint", "status"])
ALERTS_INGESTED = Counter(
    "vigil_alerts_ingested_total", "Alerts received, by endpoint and outcome (new, changed, repeat)", ["endpoint", "outcome"]
)
API_TRANSITIONS = Counter(
    "vigil_api_transitions_total", "Transitions requested through the API, by transition and outcome", ["transition", "outcome"]
)
