"""An acknowledgement that lands before the escalation policy is frozen still gets the policy's ack timeout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper
from temporalio.worker import Worker

import client.outbox as outbox_module
from tests.conftest import Keys
from tests.flows import handle_of, trigger
from tests.helpers import eventually
from vigil.contracts import IncidentState, IncidentStatus
from vigil.settings import Settings
from worker import WORKFLOWS, build_worker
from workflows.incident import IncidentWorkflow


def _policy_database_down(**_: object) -> None:
    raise OperationalError("SELECT escalation_routes", {}, Exception("the policy database is down"))


async def test_an_ack_before_the_policy_is_frozen_still_re_triggers(
    api: httpx.AsyncClient, keys: Keys, client: Client, settings: Settings, sessions: sessionmaker[Session],
    skipper: TimeSkipper, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The API cannot read the policy when the incident opens (its database fails), so the alert is accepted and
    # the workflow is started without a plan, to freeze it itself (client/outbox.py _with_plan).
    monkeypatch.setattr(outbox_module, "policies", SimpleNamespace(freeze_policy=_policy_database_down))
    # Workflows only: the policy's freeze activity waits, so the ack is accepted while the policy is not frozen.
    async with Worker(client, task_queue=settings.temporal.task_queue, workflows=WORKFLOWS):
        number = await trigger(api, keys, "early-ack")
        resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", json={},
                              headers=keys.auth(keys.responder))
        assert resp.status_code == 200, resp.text
        handle = handle_of(client, number)
        early: IncidentState = await handle.query(IncidentWorkflow.state)
        assert early.status == IncidentStatus.acknowledged and early.plan is None and early.retrigger_at is None

    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, sessions, executor):
            timeout = timedelta(seconds=settings.escalation.ack_timeout_seconds)

            async def timed() -> bool:
                s: IncidentState = await handle.query(IncidentWorkflow.state)
                return s.plan is not None and s.retrigger_at == s.acknowledged_at + timeout  # type: ignore[operator]

            await eventually(timed)
            await skipper.fast_forward(handle, timeout + timedelta(minutes=1))

            async def retriggered() -> bool:
                s: IncidentState = await handle.query(IncidentWorkflow.state)
                return s.status == IncidentStatus.triggered and s.ladder_round == 1

            await eventually(retriggered)
