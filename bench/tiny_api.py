"""The storm scenario's API baseline (issue 11): the same FastAPI, uvicorn and pydantic stack as Vigil's API,
parsing the same Alertmanager body into the same model (api.ingest.schemas.AlertmanagerWebhook) and answering
202 with the same response model, and nothing else: no key check, no database, no Temporal, no middleware.

Served as Vigil's API is, in its own process: `python -m uvicorn bench.tiny_api:app --host 127.0.0.1 --port N`.
"""

from __future__ import annotations

from fastapi import FastAPI, status

from api.ingest.schemas import AlertmanagerWebhook, IngestResponse

app = FastAPI(title="bench baseline")


@app.post(
    "/api/v1/integrations/alertmanager", status_code=status.HTTP_202_ACCEPTED, response_model=IngestResponse
)
async def alertmanager(body: AlertmanagerWebhook) -> IngestResponse:
    return IngestResponse(alerts=len(body.alerts), incidents=[], outcomes={"new": len(body.alerts)})
