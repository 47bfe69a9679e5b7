"""Continue-as-new under an alert storm: nothing lost, nothing paged twice, the ladder resumes mid-wait.

This module runs its own dev server with `limit.historyCount.suggestContinueAsNew` lowered, so a few dozen
alerts are enough to make Temporal suggest continue-as-new several times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import TimeSkipper, TimeSkippingConfig, WorkflowEnvironment

from tests.conftest import Inbox, Keys, start_dev_server
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually, pd_event
from vigil.models import TimelineEvent
from workflows.incident import IncidentWorkflow

SUGGEST_AFTER_EVENTS = 60


@pytest.fixture(scope="module")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server(f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER_EVENTS}")
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="module")
def skipper(client: Client) -> TimeSkipper:
    return TimeSkipper(client, config=TimeSkippingConfig(enabled=False))


async def runs(client: Client, number: int) -> list[WorkflowExecutionStatus | None]:
    return [w.status async for w in client.list_workflows(f'WorkflowId="INC-{number}"')]


async def test_storm_during_ladder_continues_as_new_without_loss_or_double_page(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], inbox: Inbox,
) -> None:
    number = await trigger(api, keys, dedup_key="first")
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])

    storm = 40
    for i in range(storm):  # each new fingerprint is one update, several history events
        resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, f"storm-{i}"))
        assert resp.status_code == 202, resp.text

    async def continued_at_least_twice() -> list:
        statuses = await runs(client, number)
        return statuses if statuses.count(WorkflowExecutionStatus.CONTINUED_AS_NEW) >= 2 else []

    statuses = await eventually(continued_at_least_twice, timeout=30)
    assert statuses.count(WorkflowExecutionStatus.RUNNING) == 1

    handle = handle_of(client, number)
    state = await handle.query(IncidentWorkflow.state)
    assert len(state.alerts) == storm + 1
    assert (state.status, state.ladder_step) == ("triggered", 1)
    assert state.next_escalation_at is not None

    # The ladder resumes where it was: the SMS comes once, at +5 min, and the email is not resent.
    await skipper.fast_forward(handle, timedelta(minutes=5, seconds=1))
    await eventually(lambda: [a.channel for a in attempts(sessions, number)] == ["email", "sms"])
    ack = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
    assert ack.status_code == 200
    await skipper.fast_forward(handle, timedelta(minutes=29))  # up to just before the ack times out (30 min)
    assert [a.channel for a in attempts(sessions, number)] == ["email", "sms"]
    assert len(inbox.for_incident(number)) == 1  # what really went out over SMTP

    # Every timeline entry reached the DB exactly once, across all runs.
    final = await handle.query(IncidentWorkflow.state)

    def projected() -> list[int]:
        with sessions() as session:
            seqs = list(session.scalars(select(TimelineEvent.seq).where(TimelineEvent.incident_number == number)))
        return sorted(seqs) if len(seqs) == final.timeline_seq else []

    assert await eventually(projected) == list(range(1, final.timeline_seq + 1))
