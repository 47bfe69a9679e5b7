"""Crash safety of the escalation ladder: a worker SIGKILLed mid-send, and Temporal restarted mid-ladder.

Each remaining rung pages exactly once: the provider server (tests/provider_server.py) counts what it
placed per idempotency key, and real SMTP counts the emails.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from api.main import create_app
from tests.conftest import Inbox, Keys
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from tests.servers import RestartableServer, worker_process
from vigil.contracts import DeliveryStatus, IncidentState
from vigil.settings import Settings
from worker import build_worker
from workflows.incident import IncidentWorkflow
from workflows.ladder import NOTIFY_RETRY, NOTIFY_TIMEOUT

STEP = timedelta(minutes=5, seconds=1)
PHONE = "+15550100100"  # the default ladder's on-call phone


@pytest.fixture
def settings(settings: Settings, provider: ProviderServer) -> Settings:
    """The suite's settings with SMS and IVR going to the test middleware."""
    return settings.model_copy(update={"providers": provider.provider_settings()})


def ladder_keys(number: int) -> dict[str, str]:
    """The default ladder's idempotency keys, rung by rung."""
    return {
        "email": f"INC-{number}/r0s0/email/oncall@localhost",
        "sms": f"INC-{number}/r0s1/sms/{PHONE}",
        "ivr": f"INC-{number}/r0s2/ivr/{PHONE}",
        "manager": f"INC-{number}/r0s3/email/manager@localhost",
    }


def log_of(sessions: sessionmaker[Session], number: int) -> list[tuple[str, int, str]]:
    """The notification log as (idempotency key, attempt, status), oldest first."""
    return [(a.idempotency_key, a.attempt, a.status) for a in attempts(sessions, number)]


def emailed(inbox: Inbox, number: int) -> list[str]:
    """Idempotency keys of the emails that arrived, in order."""
    return [m["X-Vigil-Idempotency-Key"] for m in inbox.for_incident(number)]


async def delivered(handle: WorkflowHandle, key: str) -> bool:
    """The workflow has heard back from the activity that sent `key`."""
    d = (await handle.query(IncidentWorkflow.state)).deliveries.get(key)
    return d is not None and d.status == DeliveryStatus.sent


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RestartableServer]:
    """A dev server of this test's own, persisted to a file so that it can be restarted with its state."""
    srv = RestartableServer(tmp_path / "temporal.db")
    await srv.start()
    yield srv
    if srv.env is not None:
        await srv.stop()


async def test_worker_killed_mid_send_pages_every_remaining_step_exactly_once(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session], provider: ProviderServer, inbox: Inbox, tmp_path: Path,
) -> None:
    with worker_process(client, settings, tmp_path / "killed.log") as first:
        await eventually(lambda: "worker started" in first.events(), timeout=30)
        number = await trigger(api, keys, dedup_key="killed-mid-send")
        handle, key = handle_of(client, number), ladder_keys(number)
        await eventually(lambda: log_of(sessions, number) == [(key["email"], 1, "sent")])

        # The middleware takes the SMS and withholds its answer: the page is placed, the worker never hears.
        provider.hold()
        await skipper.fast_forward(handle, STEP)
        await eventually(lambda: provider.in_flight == 1)
        os.kill(first.proc.pid, signal.SIGKILL)
        assert await asyncio.to_thread(first.proc.wait, 10) == -signal.SIGKILL
    provider.release()
    assert provider.sends_by_key() == {key["sms"]: 1}

    with worker_process(client, settings, tmp_path / "new.log") as second:
        await eventually(lambda: "worker started" in second.events(), timeout=30)
        # Nobody reports the lost attempt: Temporal retries it once its start-to-close timeout has passed, in
        # real time, since time skipping waits while an activity is running.
        retry_deadline = (NOTIFY_TIMEOUT + NOTIFY_RETRY.maximum_interval).total_seconds() + 30
        await eventually(lambda: delivered(handle, key["sms"]), timeout=retry_deadline)
        assert log_of(sessions, number) == [
            (key["email"], 1, "sent"), (key["sms"], 1, "sending"), (key["sms"], 2, "sent"),
        ]

        await skipper.fast_forward(handle, STEP)
        await eventually(lambda: provider.sends_by_key()[key["ivr"]] == 1)
        await skipper.fast_forward(handle, STEP)
        await eventually(lambda: len(inbox.for_incident(number)) == 2)

        # Each step once at the provider, though the SMS reached it twice: the retry carried the same key.
        assert provider.sends_by_key() == {key["sms"]: 1, key["ivr"]: 1}
        assert provider.key_counts() == {key["sms"]: 2, key["ivr"]: 1}
        assert emailed(inbox, number) == [key["email"], key["manager"]]
        # The killed attempt stays `sending` on the log: it was never heard back from.
        assert log_of(sessions, number) == [
            (key["email"], 1, "sent"), (key["sms"], 1, "sending"), (key["sms"], 2, "sent"),
            (key["ivr"], 1, "sent"), (key["manager"], 1, "sent"),
        ]
        state = await handle.query(IncidentWorkflow.state)
        assert state.status == "triggered", state.status
        assert "ladder exhausted" in (state.current_step or ""), state.current_step


# What a restart must not change: the incident itself and its frozen policy (the ladder's progress moves on).
UNCHANGED = {"number", "status", "severity", "service", "title", "group_key", "created_at", "alerts", "plan",
             "ladder_round"}


async def test_temporal_restarted_mid_ladder_resumes_it_exactly_once(
    server: RestartableServer, keys: Keys, settings: Settings, sessions: sessionmaker[Session],
    provider: ProviderServer, inbox: Inbox,
) -> None:
    assert server.env is not None
    client = server.env.client
    transport = httpx.ASGITransport(app=create_app(settings, client))
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with (
            build_worker(client, settings, sessions, executor),
            httpx.AsyncClient(transport=transport, base_url="http://vigil.test", timeout=60) as api,
        ):
            number = await trigger(api, keys, dedup_key="temporal-restart")
            key = ladder_keys(number)
            await eventually(lambda: len(inbox.for_incident(number)) == 1)

            async def waiting_for_sms() -> IncidentState | None:
                """The email is settled and nothing runs: the ladder only waits on its 5-minute timer."""
                handle = handle_of(client, number)
                state = await handle.query(IncidentWorkflow.state)
                idle = not (await handle.describe()).raw_description.pending_activities
                return state if idle and state.ladder_step == 1 and state.next_escalation_at else None

            before = await eventually(waiting_for_sms)
            await server.stop()
            # The same worker and client reconnect to the restarted server (same port, same database file).
            restarted = await server.start()
            handle = handle_of(restarted, number)
            skipper = TimeSkipper(restarted, config=TimeSkippingConfig(enabled=False))

            await skipper.fast_forward(handle, STEP)
            await eventually(lambda: provider.sends_by_key()[key["sms"]] == 1, timeout=30)
            await skipper.fast_forward(handle, STEP)
            await eventually(lambda: provider.sends_by_key()[key["ivr"]] == 1)
            await skipper.fast_forward(handle, STEP)
            await eventually(lambda: len(inbox.for_incident(number)) == 2)

            assert provider.sends_by_key() == {key["sms"]: 1, key["ivr"]: 1}
            assert provider.key_counts() == {key["sms"]: 1, key["ivr"]: 1}
            assert emailed(inbox, number) == [key["email"], key["manager"]]
            assert log_of(sessions, number) == [(k, 1, "sent") for k in key.values()]
            after = await handle.query(IncidentWorkflow.state)
            assert after.model_dump(include=UNCHANGED) == before.model_dump(include=UNCHANGED)
            statuses = {k: d.status for k, d in after.deliveries.items()}
            assert statuses == dict.fromkeys(key.values(), DeliveryStatus.sent)
            assert after.status == "triggered" and after.ladder_step == 4, after
            assert "ladder exhausted" in (after.current_step or ""), after.current_step
