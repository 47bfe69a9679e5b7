"""GET /healthz (liveness), /readyz (DB + Temporal reachable) and /metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Literal, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from api.deps import StateDep
from client.connection import workers_polling
from client.errors import TemporalUnavailable
from vigil.ingest import store

router = APIRouter(tags=["health"])
T = TypeVar("T")


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


def _dead_letter_check(state: StateDep) -> str:
    try:
        with state.sessions() as session:
            dead = store.outbox_counts(session, undelivered=False).dead_lettered
    except SQLAlchemyError as err:
        return f"error: {type(err).__name__}"
    if not dead:
        return "ok"
    return f"{dead} alert(s) dead-lettered: GET /api/v1/alerts?status=dead_letter (docs/runbook.md)"


async def _temporal_checks(state: StateDep) -> dict[str, str]:
    """Temporal reachable, and (informational) whether any worker polls Vigil's task queue."""
    try:
        polled = await workers_polling(await state.connection.get(), state.settings.temporal.task_queue, timeout=3)
    except (TemporalUnavailable, RPCError, RuntimeError, OSError, asyncio.TimeoutError) as err:
        return {"temporal": f"error: {type(err).__name__}", "worker": "unknown"}
    return {"temporal": "ok", "worker": "ok" if polled else "error: no worker polling the task queue"}


READY_DEADLINE_SECONDS = 2.5  # docs: /readyz answers within 3 s


async def _within(check: Awaitable[T], on_timeout: T) -> T:
    try:
        return await asyncio.wait_for(check, READY_DEADLINE_SECONDS)
    except asyncio.TimeoutError:
        return on_timeout


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="database, temporal, worker, jira, dead_letter: `ok` or what is wrong.")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "the database or Temporal does not answer"}})
async def readyz(state: StateDep, request: Request) -> JSONResponse:
    """200 when the database and Temporal answer; 503 with the failing check otherwise.

    `worker` is reported but does not gate readiness: without a worker the API still stores alerts
    (and answers 503 so senders retry), which is the right behaviour during a worker deploy.
    """
    jira_status = request.app.state.jira_status
    # Concurrent and bounded, so a held database lock or a hung Temporal or Jira still gets an answer within 3 s.
    database, dead_letter, temporal, jira = await asyncio.gather(
        _within(asyncio.to_thread(_db_ok, state), "error: timeout (database locked or slow)"),
        _within(asyncio.to_thread(_dead_letter_check, state), "unknown (timeout)"),
        _within(_temporal_checks(state), {"temporal": "error: timeout", "worker": "unknown"}),
        _within(asyncio.to_thread(jira_status.get), jira_status.cached()),
    )
    checks = {"database": database, **temporal}
    # Informational, like `worker`: Jira sync is optional and never gates readiness.
    checks["jira"] = jira
    # Informational too: dead-lettered alerts need an operator, but the pager itself still works.
    if checks["database"] == "ok":
        checks["dead_letter"] = dead_letter
    ok = checks["database"] == "ok" and checks["temporal"] == "ok"
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> Response:
    """Prometheus exposition of the API's counters: with several API processes (VIGIL_API_WORKERS), the sums over
    all of them, whichever answers (prometheus_client's multiprocess mode, set up by api/serve.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
