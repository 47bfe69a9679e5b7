"""Nothing accepted is lost: stop Temporal, post alerts, start it again; the reconciler delivers each once.

This module runs its own dev server on a fixed port with a database file, so it can be stopped and started
again with its state, like a real Temporal outage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from tests.conftest import Keys
from tests.flows import handle_of, trigger
from tests.helpers import eventually, pd_event
from tests.servers import RestartableServer
from vigil.models import AlertRow, Incident, TimelineEvent
from client.reconciler import ensure_reconciler
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RestartableServer]:
    srv = RestartableServer(tmp_path_factory.mktemp("temporal") / "temporal.db")
    await srv.start()
    yield srv
    if srv.env is not None:
        await srv.stop()


@pytest.fixture
def client(server: RestartableServer) -> Client:
    assert server.env is not None
    return server.env.client


@pytest.fixture
def settings(settings: Settings) -> Settings:
    fast = settings.worker.model_copy(update={"outbox_reconcile_seconds": 1})
    return settings.model_copy(update={"worker": fast, "temporal": settings.temporal.model_copy(
        update={"update_timeout_seconds": 3})})


def alert_timeline(sessions: sessionmaker[Session], number: int) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(TimelineEvent).where(
                TimelineEvent.incident_number == number, TimelineEvent.kind == "alert"
            )
        ) or 0


async def test_alerts_posted_during_a_temporal_outage_reach_their_incidents_exactly_once(
    server: RestartableServer, api: httpx.AsyncClient, worker: None, keys: Keys, client: Client,
    settings: Settings, sessions: sessionmaker[Session],
) -> None:
    await ensure_reconciler(client, settings)
    existing = await trigger(api, keys, dedup_key="before-outage", component="checkout", klass="Errors")

    await server.stop()
    statuses = Counter()
    sent = [
        pd_event(keys.integration, "joins-existing", component="checkout", klass="Errors"),
        *[pd_event(keys.integration, f"new-group-{i}", component="search", klass="Latency") for i in range(3)],
    ]
    for body in sent:
        resp = await api.post("/v2/enqueue", json=body)
        statuses[resp.status_code] += 1
        assert resp.status_code in (202, 503), resp.text
    # A repeat of a delivered alert needs no Temporal at all: it is counted and accepted.
    repeat = await api.post("/v2/enqueue", json=pd_event(keys.integration, "before-outage", component="checkout", klass="Errors"))
    assert repeat.status_code == 202
    assert statuses[503] == len(sent), "Temporal is down: new alerts are stored, and the sender told to retry"

    await server.start()  # the senders never retry: only the reconciler can deliver

    with sessions() as session:
        new_incident = session.scalar(select(Incident.number).where(Incident.service == "search"))
    assert new_incident is not None

    def all_delivered() -> bool:
        with sessions() as session:
            return not session.scalar(
                select(func.count()).select_from(AlertRow).where(
                    (AlertRow.delivered_status.is_(None)) | (AlertRow.delivered_status != AlertRow.status)
                )
            )

    await eventually(all_delivered, timeout=60)
    new_client = server.env.client  # type: ignore[union-attr]
    old = await handle_of(new_client, existing).query(IncidentWorkflow.state)
    new = await handle_of(new_client, new_incident).query(IncidentWorkflow.state)
    assert sorted(old.alerts) == ["before-outage", "joins-existing"]
    assert sorted(new.alerts) == ["new-group-0", "new-group-1", "new-group-2"]
    # Exactly once: one "new alert" timeline entry per fingerprint, however often the reconciler ran.
    # (A projection in flight when Temporal stopped is retried after its 10 s timeout, hence the deadline.)
    await eventually(
        lambda: (alert_timeline(sessions, existing), alert_timeline(sessions, new_incident)) == (2, 3), timeout=60
    )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 2
