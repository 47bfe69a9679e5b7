"""The default ladder on durable timers (time-skipped), and the ack-vs-page races."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from vigil.providers import ConsoleProvider, OutboundMessage, SendResult
from tests.conftest import Inbox, Keys
from tests.flows import attempts, current_details, handle_of, save_history, trigger
from tests.helpers import eventually
from vigil.settings import Settings
from worker import build_worker
from workflows.incident import IncidentWorkflow

STEP = timedelta(minutes=5, seconds=1)


async def test_ladder_email_sms_ivr_manager(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client,
    skipper: TimeSkipper, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys)
    handle = handle_of(client, number)

    def channels() -> list[str]:
        return [f"{a.channel}:{a.target}" for a in attempts(sessions, number) if a.status == "sent"]

    await eventually(lambda: channels() == ["email:oncall@localhost"])
    details = await eventually(lambda: _with_due(handle))
    assert "**Next step:** sms on-call at 20" in details, details

    expected = ["email:oncall@localhost", "sms:+15550100100", "ivr:+15550100100", "email:manager@localhost"]
    for rung in range(1, 4):
        assert await skipper.fast_forward(handle, STEP)
        await eventually(lambda rung=rung: channels() == expected[: rung + 1])

    # The ladder is exhausted: nothing more, however long we wait.
    await skipper.fast_forward(handle, timedelta(hours=2))
    assert channels() == expected
    assert [m["To"] for m in inbox.for_incident(number)] == ["oncall@localhost", "manager@localhost"]
    # Idempotency keys name incident, round, step, channel and target.
    assert attempts(sessions, number)[1].idempotency_key == f"INC-{number}/r0s1/sms/+15550100100"
    assert "ladder exhausted" in await current_details(handle)
    await save_history(handle, "ladder_exhausted")


async def _with_due(handle) -> str:  # noqa: ANN001
    details = await current_details(handle)
    return details if "Next step" in details else ""


class BlockingSms(ConsoleProvider):
    """An SMS provider that holds each send until the test releases it, and records when sends happen."""

    def __init__(self) -> None:
        super().__init__("sms")
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished_at: list[float] = []

    def send(self, message: OutboundMessage) -> SendResult:
        self.started.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("test never released the SMS")
        self.finished_at.append(time.monotonic())
        return super().send(message)


async def test_ack_waits_for_in_flight_page_and_nothing_starts_after(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], settings: Settings,
) -> None:
    sms = BlockingSms()
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with build_worker(client, settings, sessions, executor, sms=sms):
            number = await trigger(api, keys)
            handle = handle_of(client, number)
            await eventually(lambda: len(attempts(sessions, number)) == 1)
            forward = asyncio.create_task(skipper.fast_forward(handle, STEP))
            await eventually(sms.started.is_set)  # the SMS activity is now running

            ack = asyncio.create_task(
                api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
            )

            async def accepted() -> bool:
                return (await handle.query(IncidentWorkflow.state)).status == "acknowledged"

            await eventually(accepted)
            # Accepted by the workflow; the answer must still wait for the held SMS (a 2 s observation window).
            done, _ = await asyncio.wait({ack}, timeout=2)
            assert not done, "the ack returned while a page was still being sent"
            sms.release.set()
            resp = await ack
            acked_at = time.monotonic()
            assert resp.status_code == 200 and resp.json()["status"] == "acknowledged"
            assert sms.finished_at and sms.finished_at[0] <= acked_at
            await forward

            await skipper.fast_forward(handle, timedelta(minutes=29))  # up to just before the ack times out (30 min)
            assert [a.channel for a in attempts(sessions, number)] == ["email", "sms"]


@pytest.mark.parametrize("round_", range(4))
async def test_no_page_starts_after_ack_returned_even_when_racing_the_timer(
    round_: int, api: httpx.AsyncClient, worker: None, keys: Keys, client: Client,
    skipper: TimeSkipper, sessions: sessionmaker[Session],
) -> None:
    """The ack and the SMS timer race; whichever wins, no attempt starts after the ack's 200."""
    number = await trigger(api, keys, dedup_key=f"race-{round_}")
    handle = handle_of(client, number)
    await eventually(lambda: len(attempts(sessions, number)) == 1)
    forward = asyncio.create_task(skipper.fast_forward(handle, STEP))
    resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
    acked_at = datetime.now(UTC)
    assert resp.status_code == 200
    await forward
    await skipper.fast_forward(handle, timedelta(minutes=20))  # the ack (at most +5m) times out at +30m
    started = [a.started_at for a in attempts(sessions, number)]
    assert all(at <= acked_at for at in started), (started, acked_at)
    assert all(a.status == "sent" for a in attempts(sessions, number))


async def test_pages_go_out_while_the_workers_database_is_down(
    api: httpx.AsyncClient, keys: Keys, client: Client, inbox: Inbox, settings: Settings,
) -> None:
    """The notification log is best effort: a DB outage costs log rows, never the page."""
    from sqlalchemy import create_engine

    from tests.conftest import free_port
    from vigil.db import session_factory

    dead = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none", connect_args={"connect_timeout": 1})
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with build_worker(client, settings, session_factory(dead), executor):
            number = await trigger(api, keys)
            await eventually(lambda: len(inbox.for_incident(number)) == 1)

            # The projection's local activity failed: it waits as a regular activity, retried until the
            # database is back, so the rows catch up later (not lost with the local attempt).
            async def projection_pending() -> bool:
                desc = await client.get_workflow_handle(f"INC-{number}").describe()
                return "project_incident" in [a.activity_type.name for a in desc.raw_description.pending_activities]

            await eventually(projection_pending)
    dead.dispose()
