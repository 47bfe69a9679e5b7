"""API-side Prometheus metrics, served on GET /metrics."""

from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from client.errors import TransitionRefused

T = TypeVar("T")

INGEST_REQUESTS = Counter(
    "vigil_ingest_requests_total", "Ingestion requests by endpoint and HTTP status, refused ones included",
    ["endpoint", "status"],
)
INGEST_ENDPOINTS = {
    "/v2/enqueue": "enqueue", "/v2/change/enqueue": "change_enqueue", "/api/v1/integrations/alertmanager": "alertmanager",
}
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


class IngestMetrics:
    """Counts every answer of the ingestion endpoints by status: a sender refused (401, 400, 413, 422) or told to
    retry (503) is what an operator looks for, and those answers come from handlers, dependencies and middleware
    alike. Installed outside the body cap, so its 413s are counted too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = INGEST_ENDPOINTS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = "500"  # unless an answer starts: an unhandled error becomes the server's 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            INGEST_REQUESTS.labels(endpoint=endpoint, status=status).inc()
