"""GET /healthz (liveness), /readyz (DB + Temporal reachable) and /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import StateDep
from api.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _db_ok(state: StateDep) -> str:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as err:
        return f"error: {type(err).__name__}"


async def _temporal_ok(state: StateDep) -> str:
    try:
        client = await state.temporal_client()
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
        return "ok"
    except (ApiError, RuntimeError, OSError, asyncio.TimeoutError) as err:
        return f"error: {type(err).__name__}"


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    """200 when the database and Temporal both answer; 503 with the failing check otherwise."""
    checks = {"database": await asyncio.to_thread(_db_ok, state), "temporal": await _temporal_ok(state)}
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition of the API's counters."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
