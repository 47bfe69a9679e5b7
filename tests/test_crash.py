"""Crash safety of the escalation ladder: a worker SIGKILLed mid-send (one page, and a storm of 50 emails with
two kills), and Temporal restarted mid-ladder.

Each remaining rung pages exactly once: the provider server (tests/provider_server.py) counts what it
placed per idempotency key, and real SMTP counts the emails.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from api.main import create_app
from tests.conftest import Inbox, Keys, free_port
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from tests.provider_server import ProviderServer
from tests.servers import RestartableServer, WorkerProcess, worker_process
from vigil.contracts import IncidentState, PageStatus
from vigil.models import NotificationAttempt
from vigil.settings import Settings, SmtpSettings
from worker import build_worker
from workflows.incident import IncidentWorkflow
from workflows.incident.options import NOTIFY_HEARTBEAT, NOTIFY_RETRY

STEP = timedelta(minutes=5, seconds=1)
PHONE = "+15550100100"  # the default ladder's on-call phone
CALLBACKS = "/api/v1/providers/middleware/callbacks"


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
    """The workflow has heard back from the activity that sent `key` (or already from the provider's receipt)."""
    d = (await handle.query(IncidentWorkflow.state)).pages.get(key)
    return d is not None and d.status in (PageStatus.sent, PageStatus.delivered)


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
    # The handset got it; the provider's receipt reaches the only row there is yet, the killed attempt's.
    [sms] = provider.sent
    resp = await provider.callback(CALLBACKS, {
        "event_id": "killed-1", "type": "delivered", "message_id": sms.message_id, "idempotency_key": key["sms"],
    }, client=api)
    assert resp.status_code == 200, resp.text

    with worker_process(client, settings, tmp_path / "new.log") as second:
        await eventually(lambda: "worker started" in second.events(), timeout=30)
        # Nobody reports the lost attempt: its heartbeats stop, and Temporal retries it after the heartbeat
        # timeout, in real time (time skipping waits while an activity is running).
        retry_deadline = (NOTIFY_HEARTBEAT + NOTIFY_RETRY.maximum_interval).total_seconds() + 30
        await eventually(lambda: (key["sms"], 2, "sent") in log_of(sessions, number), timeout=retry_deadline)
        await eventually(lambda: delivered(handle, key["sms"]))
        # The killed attempt is closed as lost, and the receipt is on the attempt recorded as sent.
        assert log_of(sessions, number) == [
            (key["email"], 1, "sent"), (key["sms"], 1, "lost"), (key["sms"], 2, "sent"),
        ]
        assert [a.receipt for a in attempts(sessions, number)] == [None, None, "delivered"]

        await skipper.fast_forward(handle, STEP)
        await eventually(lambda: provider.sends_by_key()[key["ivr"]] == 1)
        await skipper.fast_forward(handle, STEP)
        await eventually(lambda: len(inbox.for_incident(number)) == 2)

        # Each step once at the provider, though the SMS reached it twice: the retry carried the same key.
        assert provider.sends_by_key() == {key["sms"]: 1, key["ivr"]: 1}
        assert provider.key_counts() == {key["sms"]: 2, key["ivr"]: 1}
        assert emailed(inbox, number) == [key["email"], key["manager"]]
        assert log_of(sessions, number) == [
            (key["email"], 1, "sent"), (key["sms"], 1, "lost"), (key["sms"], 2, "sent"),
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
            statuses = {k: d.status for k, d in after.pages.items()}
            assert statuses == dict.fromkeys(key.values(), PageStatus.sent)
            assert after.status == "triggered" and after.ladder_step == 4, after
            assert "ladder exhausted" in (after.current_step or ""), after.current_step


class Relay:
    """A real SMTP server that keeps each message as its data arrives, and while held withholds the 250."""
    # A worker killed while it is held has handed the message over without hearing that it was accepted.

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._open: asyncio.Event | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        if self._open is None:
            self._open = asyncio.Event()
            self._open.set()
        await self._open.wait()
        return "250 OK"

    def _set(self, open_: bool) -> None:
        def apply() -> None:
            if self._open is None:
                self._open = asyncio.Event()
            self._open.set() if open_ else self._open.clear()

        assert self.loop is not None
        self.loop.call_soon_threadsafe(apply)

    def hold(self) -> None:
        self._set(False)

    def release(self) -> None:
        self._set(True)

    def message_ids(self) -> dict[str, list[str]]:
        """Idempotency key -> the Message-ID of every copy that arrived."""
        ids: dict[str, list[str]] = {}
        for m in list(self.messages):
            ids.setdefault(m["X-Vigil-Idempotency-Key"], []).append(m["Message-ID"])
        return ids


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    relay.loop = controller.loop
    yield relay, controller.port
    relay.release()
    controller.stop()


def sent_keys(sessions: sessionmaker[Session], numbers: list[int]) -> set[str]:
    """Keys of the pages recorded as sent on the notification log."""
    with sessions() as session:
        return set(session.scalars(select(NotificationAttempt.idempotency_key).where(
            NotificationAttempt.incident_number.in_(numbers), NotificationAttempt.status == "sent",
        )))


def kill(worker: WorkerProcess) -> None:
    os.kill(worker.proc.pid, signal.SIGKILL)
    assert worker.proc.wait(10) == -signal.SIGKILL


async def test_fifty_incidents_and_two_worker_kills_send_no_duplicate_email(
    server: RestartableServer, keys: Keys, settings: Settings, sessions: sessionmaker[Session],
    relay: tuple[Relay, int], tmp_path: Path,
) -> None:
    assert server.env is not None
    client = server.env.client
    smtp, port = relay
    settings = settings.model_copy(update={"smtp": SmtpSettings(host="127.0.0.1", port=port, timeout_seconds=30)})
    transport = httpx.ASGITransport(app=create_app(settings, client))
    numbers: list[int] = []
    email = "INC-{}/r0s0/email/oncall@localhost".format

    async def storm(count: int) -> list[str]:
        """`count` new incidents, each of its own group, each paging by email first; their email keys."""
        async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test", timeout=60) as api:
            for _ in range(count):
                i = len(numbers)
                numbers.append(await trigger(api, keys, dedup_key=f"storm-{i}", component=f"svc-{i}"))
        return [email(n) for n in numbers[-count:]]

    retry_deadline = (NOTIFY_HEARTBEAT + NOTIFY_RETRY.maximum_interval).total_seconds() + 60
    with worker_process(client, settings, tmp_path / "first.log") as first:
        await eventually(lambda: "worker started" in first.events(), timeout=30)
        await storm(20)
        await eventually(lambda: len(sent_keys(sessions, numbers)) == 20, timeout=60)
        # Kill 1: fifteen emails handed to SMTP, none answered yet, so none recorded as sent.
        smtp.hold()
        unrecorded = await storm(15)
        await eventually(lambda: len(smtp.message_ids()) == 35, timeout=60)
        kill(first)
    smtp.release()

    with worker_process(client, settings, tmp_path / "second.log") as second:
        await eventually(lambda: "worker started" in second.events(), timeout=30)
        await eventually(lambda: len(sent_keys(sessions, numbers)) == 35, timeout=retry_deadline)
        # Kill 2, across a Temporal outage: fifteen emails accepted by SMTP and recorded as sent, but Temporal
        # is down, so it never hears that their activities completed.
        smtp.hold()
        recorded = await storm(15)
        await eventually(lambda: len(smtp.message_ids()) == 50, timeout=60)
        await server.stop()
        smtp.release()
        await eventually(lambda: len(sent_keys(sessions, numbers)) == 50, timeout=60)
        kill(second)
    client = await server.start()

    with worker_process(client, settings, tmp_path / "third.log") as third:
        await eventually(lambda: "worker started" in third.events(), timeout=30)
        # Temporal times the lost attempts out by their heartbeats and retries them; each retry finds its
        # send recorded and returns it without sending.
        await eventually(
            lambda: third.events().count("notification already sent; not sending again") == 15,
            timeout=retry_deadline,
        )
        for n in numbers:
            await eventually(lambda: delivered(handle_of(client, n), email(n)), timeout=30)

    ids = smtp.message_ids()
    assert set(ids) == {email(n) for n in numbers}  # every incident paged
    # 0 duplicate emails: one Message-ID per page. Sent twice only where SMTP took it and nobody recorded it.
    assert {k: v for k, v in ids.items() if len(set(v)) != 1} == {}
    assert sorted(k for k, v in ids.items() if len(v) > 1) == sorted(unrecorded)
    assert all(len(ids[k]) == 1 for k in recorded)
    log = [(a.idempotency_key, a.attempt, a.status) for n in numbers for a in attempts(sessions, n)]
    assert sorted(k for k, _, status in log if status == "lost") == sorted(unrecorded)
    assert sorted(k for k, _, status in log if status == "sent") == sorted(email(n) for n in numbers)
    assert [entry for entry in log if entry[2] == "sending"] == []
    print(f"50 incidents, 2 kills: {sum(map(len, ids.values()))} emails reached SMTP for 50 pages; "
          f"{len(unrecorded)} resent with the same Message-ID, {len(recorded)} retries found their send recorded")
