"""The FastAPI app. `uvicorn api.main:app`; tests build their own with create_app(settings, client)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import health
from api.deps import AppState, authenticate_first
from api.docs_ui import install_docs_ui
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.metrics import IngestMetrics
from api.openapi import document_common_answers
from api.alerts.router import router as alerts_router
from api.incidents.router import notifications as notifications_router
from api.incidents.router import router as incidents_router
from api.integrations.router import router as integrations_router
from api.silences.router import router as silences_router
from api.escalation import router as escalation
from api.heartbeats.router import router as heartbeats_router
from api.people import router as people
from api.postmortems import evidence_queries
from api.postmortems import router as postmortems
from api.postmortems.attachments import MULTIPART_SLACK
from api.jira_status import JiraStatus
from api.keys import router as keys
from api.schedules.calendar import router as calendars_router
from api.schedules.router import router as schedules_router
from api.ingest.router import router as ingest_router
from api.acklinks.router import router as acklinks_router
from api.incidents.page import router as incident_page_router
from api.providers.router import router as providers_router
from api.webhooks.jira import router as jira_webhook_router
from client.connection import Connection
from vigil import crypto
from vigil.db import create_db_engine, session_factory
from vigil.logging import configure_logging, get_logger
from vigil.settings import Settings, get_settings

log = get_logger("vigil.api")

DESCRIPTION = """
Vigil turns alerts into durable incidents on Temporal.

- People authenticate with `Authorization: Bearer <API key>` (roles: viewer, responder, admin).
- Sources authenticate with their integration key (`routing_key` for `/v2/enqueue`, Bearer for Alertmanager).
- Every error has the shape `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    settings = settings or get_settings()
    core = settings.core
    engine = create_db_engine(
        core.database_url, lock_timeout_seconds=core.database_lock_timeout_seconds,
        statement_timeout_seconds=core.database_statement_timeout_seconds,
        pool_timeout_seconds=core.database_pool_timeout_seconds,
    )
    crypto.configure(settings.core)
    state = AppState(
        settings=settings, engine=engine, sessions=session_factory(engine), connection=Connection(settings.temporal, temporal)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("api started", database=engine.url.render_as_string(hide_password=True),
                 temporal=settings.temporal.address,
                 jira="on" if settings.jira.enabled else "off (VIGIL_JIRA_URL is not set)")
        if settings.jira.enabled:
            # In the background: a slow Jira must not delay the start; the result is logged and in /readyz.
            asyncio.get_running_loop().run_in_executor(None, _app.state.jira_status.get)
        _freeze_startup_objects()
        yield
        engine.dispose()

    app = FastAPI(
        title="Vigil", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    install_docs_ui(app)
    # Attachments have their own cap (VIGIL_RCA_ATTACHMENTS_MAX_BYTES), cut off while the upload streams.
    upload_cap = settings.rca.attachments_max_bytes + MULTIPART_SLACK
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_body_bytes,
                       per_path=[(postmortems.ATTACHMENTS_PATH, upload_cap)])
    app.add_middleware(IngestMetrics)  # outside the body cap: its 413s are counted too
    app.state.vigil = state
    app.state.jira_status = JiraStatus(settings.jira)
    install_error_handlers(app)
    app.include_router(ingest_router)
    app.include_router(incidents_router)
    app.include_router(notifications_router)
    app.include_router(postmortems.router)
    app.include_router(evidence_queries.router)
    app.include_router(alerts_router)
    app.include_router(silences_router)
    app.include_router(integrations_router)
    app.include_router(providers_router)
    app.include_router(acklinks_router)
    app.include_router(incident_page_router)
    app.include_router(jira_webhook_router)
    app.include_router(people.users)
    app.include_router(people.groups)
    app.include_router(keys.own)
    app.include_router(keys.users)
    app.include_router(keys.audit_log)
    app.include_router(schedules_router)
    app.include_router(calendars_router)
    app.include_router(heartbeats_router)
    app.include_router(escalation.webhooks)
    app.include_router(escalation.policies)
    app.include_router(escalation.routes)
    app.include_router(health.router)
    authenticate_first(app)
    document_common_answers(app)
    return app


_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process, at the first app's start: what startup built (modules, routes, models, the engine) is
    moved out of the garbage collector's generations, so a full collection, which a request allocating many
    objects triggers (a batch of 100 alerts), no longer walks it: about a third of the API's CPU per batched
    alert was collections before (issue 11). Nothing is leaked: these objects live as long as the process."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _app_from_env() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.core.log_format, settings.core.log_level)
    return create_app(settings)


def __getattr__(name: str) -> FastAPI:
    """`uvicorn api.main:app` builds the app from the environment on first access, not on import, so that
    importing create_app (tests, bench) opens no database and leaves logging alone."""
    if name == "app":
        globals()["app"] = built = _app_from_env()
        return built
    raise AttributeError(name)
