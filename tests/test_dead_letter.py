"""Temporal refuses what Vigil took in (here: a cluster whose search-attribute limit is smaller than Vigil
assumes): each refused alert is retried on its own, dead-lettered past the limit, and paged to the operator,
while the alerts behind it are delivered. Its own dev server, with the lowered limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Inbox, Keys, start_dev_server
from tests.flows import handle_of
from tests.test_ingest_hardening import alert, client_getter, integration_info, paged, store_unfitted
from client.incidents import IncidentClient
from client.outbox import AlertOutbox
from vigil.models import AlertRow, Incident
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow

SEARCH_ATTRIBUTE_LIMIT = 128  # bytes per keyword value; Temporal's default is 2,048


@pytest.fixture(scope="module")
async def small_limits() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server(f"frontend.searchAttributesSizeOfValueLimit={SEARCH_ATTRIBUTE_LIMIT}")
    yield env
    await env.shutdown()


@pytest.fixture
def client(small_limits: WorkflowEnvironment) -> Client:
    return small_limits.client


async def test_a_refused_alert_is_dead_lettered_paged_to_the_operator_and_never_blocks_the_others(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client, settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    integration = integration_info(sessions)
    # Oldest first in the outbox: an incident Temporal refuses (its GroupKey is over the cluster's limit),
    # then twenty it takes.
    refused = store_unfitted(sessions, integration, [alert("p-1", "poisoned-" + "p" * 140), alert("p-2", "poisoned-" + "p" * 140)])
    healthy = [store_unfitted(sessions, integration, [alert(f"g-{i}", f"svc-{i}")]) for i in range(20)]

    outbox = AlertOutbox(sessions, settings, IncidentClient(sessions, settings, client_getter(client)))
    first = await outbox.redeliver()
    assert (first.delivered, first.refused, first.dead_lettered) == (20, 2, 0)
    for number in healthy:
        await paged(inbox, number)

    for _ in range(settings.ingest.dead_letter_after - 1):
        await outbox.redeliver()
    with sessions() as session:
        dead = session.scalars(select(AlertRow).where(AlertRow.dead_lettered_at.is_not(None))).all()
        assert sorted(r.fingerprint for r in dead) == ["p-1", "p-2"]
        assert all(r.delivery_attempts == settings.ingest.dead_letter_after for r in dead)
        assert "exceeds size limit 128" in (dead[0].delivery_error or ""), dead[0].delivery_error
        operator = session.scalars(select(Incident).where(Incident.service == "vigil")).one()
    # The operator's on-call is paged through the ordinary routing and ladder, one alert per dead letter.
    await paged(inbox, operator.number)
    op_state = await handle_of(client, operator.number).query(IncidentWorkflow.state)
    assert len(op_state.alerts) == 2
    assert all(f"INC-{refused}" in a.summary for a in op_state.alerts.values())
    # Dead letters are out of the outbox: later runs do not try them again.
    after = await outbox.redeliver()
    assert (after.incidents, after.refused) == (0, 0)

    listed = await api.get("/api/v1/alerts", params={"status": "dead_letter"}, headers=keys.auth(keys.viewer))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert sorted(i["fingerprint"] for i in items) == ["p-1", "p-2"]
    assert all(i["dead_lettered_at"] and not i["delivered"] and "exceeds size limit" in i["delivery_error"] for i in items)
    ready = (await api.get("/readyz")).json()
    assert ready["checks"]["dead_letter"].startswith("2 alert(s) dead-lettered"), ready
    counts = await outbox.observe()
    assert counts.dead_lettered == 2

    # After fixing the cause, an admin puts one back (docs/runbook.md): it is in the outbox again.
    alert_id = next(i["id"] for i in items if i["fingerprint"] == "p-1")
    forbidden = await api.post(f"/api/v1/alerts/{alert_id}/redeliver", headers=keys.auth(keys.responder))
    assert forbidden.status_code == 403
    back = await api.post(f"/api/v1/alerts/{alert_id}/redeliver", headers=keys.auth(keys.admin))
    assert back.status_code == 202, back.text
    assert back.json()["dead_lettered_at"] is None and back.json()["delivery_attempts"] == 0
    again = await api.post(f"/api/v1/alerts/{alert_id}/redeliver", headers=keys.auth(keys.admin))
    assert again.status_code == 409
    missing = await api.post("/api/v1/alerts/999999999/redeliver", headers=keys.auth(keys.admin))
    assert missing.status_code == 404
    retry = await outbox.redeliver()
    assert (retry.incidents, retry.refused) == (1, 1)
