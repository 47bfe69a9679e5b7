"""The worker's SIGTERM drain during a deploy, with real `worker.py` processes, a real dev server and a real SMTP
server that holds its answer to DATA (a send in flight, already on the wire). docs/deploy.md's SIGTERM section.

- Pages in flight when the old build gets SIGTERM finish on it, each once at the recipient, while the new build's
  worker runs the timers that fall due meanwhile; the old process exits 0 once they are done.
- A send that outlives `graceful_shutdown_timeout` is not cut off: it keeps heartbeating and finishes on the old
  worker. Killed past the orchestrator's grace, it is retried on the new worker with the same Message-ID and
  idempotency key: once at the recipient if the MTA had not answered, twice as one message (the provider edge) if
  the MTA's answer was on its way back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from deploy import versions
from tests.conftest import ROOT, Keys, free_port
from tests.flows import attempts, handle_of, trigger
from tests.helpers import eventually
from tests.servers import WorkerProcess, worker_env
from vigil.contracts import PageStatus
from vigil.settings import Settings, SmtpSettings
from workflows.incident import IncidentWorkflow
from workflows.incident.options import NOTIFY_HEARTBEAT, NOTIFY_RETRY

SMS_WAIT = timedelta(minutes=5, seconds=1)  # the default ladder: email now, SMS at +5 min
ONCALL = "oncall@localhost"  # the default ladder's first rung


class HeldMta:
    """An SMTP server that, for the incidents the test holds, reads the whole message and answers DATA only when
    released. Accepted is what it answered 250 to: what the recipient gets. A client that goes away before the
    answer cancels the handler (aiosmtpd), so its message is received but never accepted, as with a real MTA."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.accepted: list[EmailMessage] = []
        self._hold = 0
        self._gates: dict[str, asyncio.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    def hold_next(self, count: int) -> None:
        """The next `count` emails wait for `release` (of their incident, INC-<n>)."""
        self._hold = count

    def release(self, ref: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._gates[ref].set)

    def release_all(self) -> None:
        for ref in list(self._gates):
            self.release(ref)

    def holding(self, ref: str) -> bool:
        gate = self._gates.get(ref)
        return gate is not None and not gate.is_set()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        ref = msg["X-Vigil-Incident"]
        self.received.append(msg)
        if self._hold > 0:
            self._hold -= 1
            self._gates[ref] = asyncio.Event()  # created before the test can see the message in `received`
            await self._gates[ref].wait()
        self.accepted.append(msg)
        return "250 OK"

    def keys(self, which: list[EmailMessage], number: int) -> list[str]:
        return [m["X-Vigil-Idempotency-Key"] for m in which if m["X-Vigil-Incident"] == f"INC-{number}"]


@pytest.fixture
def mta() -> Iterator[HeldMta]:
    handler = HeldMta()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.loop, handler.port = controller.loop, controller.port
    try:
        yield handler
    finally:
        handler.release_all()
        controller.stop()


@pytest.fixture
def settings(settings: Settings, mta: HeldMta) -> Settings:
    """The suite's settings, email going to the held MTA."""
    # The SMTP client's timeout (10 s by default) bounds how long a held send can wait: above what these tests hold.
    # (Holds also stay under a page's 30 s start-to-close timeout, past which Temporal retries it elsewhere anyway.)
    return settings.model_copy(update={"smtp": SmtpSettings(host="127.0.0.1", port=mta.port, timeout_seconds=60)})


@contextmanager
def worker(
    client: Client, settings: Settings, log: Path, *, graceful: int, build: str | None = None,
    deployment: str | None = None,
) -> Iterator[WorkerProcess]:
    """`python worker.py` with `settings` and this graceful shutdown timeout; `build`: a version of `deployment`."""
    env = {**worker_env(client, settings), "VIGIL_WORKER_GRACEFUL_SHUTDOWN_SECONDS": str(graceful),
           "VIGIL_SMTP_TIMEOUT_SECONDS": str(settings.smtp.timeout_seconds)}
    if build is not None:
        assert deployment is not None
        env |= {"VIGIL_WORKER_VERSIONING": "true", "VIGIL_WORKER_DEPLOYMENT_NAME": deployment,
                "VIGIL_WORKER_BUILD_ID": build}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        yield WorkerProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def records(w: WorkerProcess) -> list[dict]:
    """The worker's JSON log lines."""
    out = []
    for line in w.log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def notified(w: WorkerProcess, number: int) -> list[tuple[str, str]]:
    """(channel, status) of every notification this worker finished for the incident."""
    return [(r["channel"], r["status"]) for r in records(w)
            if r.get("event") == "notification finished" and r.get("incident") == f"INC-{number}"]


def stopping(w: WorkerProcess) -> bool:
    """The worker has had its signal and is draining (worker.py's log line)."""
    return any(e.startswith("worker stopping") for e in w.events())


def identity(w: WorkerProcess) -> str:
    """The worker's Temporal identity (the SDK's default: pid@host)."""
    return f"{w.proc.pid}@"


async def notify_runs(client: Client, number: int) -> list[tuple[int, str, str]]:
    """Per completed notification activity, in order: (attempt, identity of the worker that ran it, identity of the
    worker that completed it), from Temporal's history."""
    events = (await handle_of(client, number).fetch_history()).events
    notify_ids = {e.event_id for e in events if e.HasField("activity_task_scheduled_event_attributes")
                  and e.activity_task_scheduled_event_attributes.activity_type.name == "send_notification"}
    started: dict[int, tuple[int, str]] = {}
    runs = []
    for e in events:
        if e.HasField("activity_task_started_event_attributes"):
            a = e.activity_task_started_event_attributes
            started[a.scheduled_event_id] = (a.attempt, a.identity)
        elif e.HasField("activity_task_completed_event_attributes"):
            c = e.activity_task_completed_event_attributes
            if c.scheduled_event_id in notify_ids:
                runs.append((*started[c.scheduled_event_id], c.identity))
    return runs


def log_of(sessions: sessionmaker[Session], number: int) -> list[tuple[str, int, str]]:
    """The notification log as (channel, attempt, status), oldest first."""
    return [(a.channel, a.attempt, a.status) for a in attempts(sessions, number)]


async def page_sent(client: Client, number: int, key: str) -> bool:
    """The workflow has heard that the page went out (the activity's completion reached it)."""
    page = (await handle_of(client, number).query(IncidentWorkflow.state)).pages.get(key)
    return page is not None and page.status == PageStatus.sent


def email_key(number: int) -> str:
    return f"INC-{number}/r0s0/email/{ONCALL}"


async def test_sigterm_mid_deploy_finishes_the_pages_in_flight_on_v1_while_v2_runs_the_timers(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session], mta: HeldMta, tmp_path: Path,
) -> None:
    deployment, graceful = f"vigil-drain-{uuid.uuid4().hex[:8]}", 20
    with worker(client, settings, tmp_path / "v1.log", graceful=graceful, build="v1", deployment=deployment) as v1:
        await versions.set_current(client, deployment, "v1")
        b = await trigger(api, keys, "drain-b", component="svc-b")  # mid-ladder: emailed, SMS timer running
        await eventually(lambda: log_of(sessions, b) == [("email", 1, "sent")], timeout=30)

        # Two pages on the wire when the deploy starts: the MTA has read them and has not answered yet.
        mta.hold_next(2)
        a1 = await trigger(api, keys, "drain-a1", component="svc-a1")
        a2 = await trigger(api, keys, "drain-a2", component="svc-a2")
        await eventually(lambda: mta.holding(f"INC-{a1}") and mta.holding(f"INC-{a2}"), timeout=30)

        with worker(client, settings, tmp_path / "v2.log", graceful=graceful, build="v2",
                    deployment=deployment) as v2:
            await versions.set_current(client, deployment, "v2")
            v1.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: stopping(v1), timeout=10)

            # A timer that falls due during the drain fires, once, on v2.
            assert log_of(sessions, b) == [("email", 1, "sent")]
            await skipper.fast_forward(handle_of(client, b), SMS_WAIT)
            await eventually(lambda: log_of(sessions, b) == [("email", 1, "sent"), ("sms", 1, "sent")], timeout=30)
            assert notified(v2, b) == [("sms", "sent")]

            # v1 is still draining: its two sends wait for the MTA. They finish on v1, and v1 exits 0.
            assert v1.proc.poll() is None, v1.log.read_text()[-2000:]
            mta.release(f"INC-{a1}")
            mta.release(f"INC-{a2}")
            code = await asyncio.to_thread(v1.proc.wait, graceful)
            assert code == 0, v1.log.read_text()[-3000:]
            assert "worker stopped" in v1.events()

            for a in (a1, a2):
                assert mta.keys(mta.received, a) == mta.keys(mta.accepted, a) == [email_key(a)]
                assert log_of(sessions, a) == [("email", 1, "sent")]
                assert notified(v1, a) == [("email", "sent")] and notified(v2, a) == []
                # Temporal heard it from v1: attempt 1, run and completed by v1's worker.
                [(attempt, ran, completed)] = await notify_runs(client, a)
                assert attempt == 1 and ran.startswith(identity(v1)) and completed.startswith(identity(v1))
                await eventually(lambda a=a: page_sent(client, a, email_key(a)), timeout=10)

            # The drained incidents go on up their ladders on v2, one page per rung.
            await skipper.fast_forward(handle_of(client, a1), SMS_WAIT)
            await eventually(lambda: log_of(sessions, a1) == [("email", 1, "sent"), ("sms", 1, "sent")], timeout=30)
            assert notified(v2, a1) == [("sms", "sent")]
            assert mta.keys(mta.accepted, b) == [email_key(b)]


async def last_heartbeat(client: Client, number: int) -> tuple[int, datetime] | None:
    """(attempt, when Temporal last heard a heartbeat) of the incident's pending notification, if one is running."""
    described = await handle_of(client, number).describe()
    for p in described.raw_description.pending_activities:
        if p.activity_type.name == "send_notification" and p.HasField("last_heartbeat_time"):
            return p.attempt, p.last_heartbeat_time.ToDatetime(tzinfo=timezone.utc)
    return None


@pytest.mark.parametrize("versioned", [True, False], ids=["v1-to-v2", "rolling-unversioned"])
async def test_a_send_outliving_the_shutdown_timeout_finishes_on_the_old_worker_or_is_retried_on_the_new_one(
    api: httpx.AsyncClient, keys: Keys, client: Client, settings: Settings, sessions: sessionmaker[Session],
    mta: HeldMta, tmp_path: Path, versioned: bool,
) -> None:
    graceful, deployment = 1, f"vigil-drain-{uuid.uuid4().hex[:8]}"
    builds = {"build": "v1", "deployment": deployment} if versioned else {}
    with worker(client, settings, tmp_path / "old.log", graceful=graceful, **builds) as old:
        if versioned:
            await versions.set_current(client, deployment, "v1")
        await eventually(lambda: "worker started" in old.events(), timeout=30)
        mta.hold_next(3)
        held = [await trigger(api, keys, f"outlive-{n}", component=f"svc-{n}") for n in range(3)]
        a1, a2, a3 = held
        await eventually(lambda: all(mta.holding(f"INC-{a}") for a in held), timeout=30)

        # The new build is up and current (or, unversioned, a rolling restart's new worker), then the old one
        # gets SIGTERM.
        builds = {"build": "v2", "deployment": deployment} if versioned else {}
        with worker(client, settings, tmp_path / "new.log", graceful=graceful, **builds) as new:
            if versioned:
                await versions.set_current(client, deployment, "v2")
            await eventually(lambda: "worker started" in new.events(), timeout=30)
            sigterm = datetime.now(timezone.utc)
            old.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: stopping(old), timeout=10)

            # Past the shutdown timeout the SDK asks the activities to cancel; a send on the wire is not
            # interrupted (the activity reads cancellation only before it sends), it keeps heartbeating, so
            # Temporal does not time it out and retry it elsewhere, and the worker waits for it.
            async def beating_past_the_timeout() -> bool:
                beats = [await last_heartbeat(client, a) for a in held]
                past = sigterm + timedelta(seconds=graceful) + NOTIFY_HEARTBEAT
                return all(b is not None and b[0] == 1 and b[1] > past for b in beats)

            await eventually(beating_past_the_timeout, timeout=30)
            assert old.proc.poll() is None, old.log.read_text()[-2000:]

            # a1: the MTA answers; the page finishes on the old worker, once.
            mta.release(f"INC-{a1}")
            await eventually(lambda: log_of(sessions, a1) == [("email", 1, "sent")], timeout=10)
            await eventually(lambda: page_sent(client, a1, email_key(a1)), timeout=10)
            [(attempt, ran, completed)] = await notify_runs(client, a1)
            assert attempt == 1 and ran.startswith(identity(old)) and completed.startswith(identity(old))
            assert mta.keys(mta.received, a1) == mta.keys(mta.accepted, a1) == [email_key(a1)]

            # The orchestrator's grace runs out (SIGKILL) with a2 still unanswered and a3's answer (250) on its way
            # back: the worker is frozen first so that the answer is sent and never read.
            assert old.proc.poll() is None
            os.kill(old.proc.pid, signal.SIGSTOP)
            mta.release(f"INC-{a3}")
            await eventually(lambda: mta.keys(mta.accepted, a3) == [email_key(a3)], timeout=10)
            os.kill(old.proc.pid, signal.SIGKILL)
            assert await asyncio.to_thread(old.proc.wait, 10) == -signal.SIGKILL

            # No more heartbeats: Temporal retries both pages on the new worker, attempt 2 with the same key.
            retry = (NOTIFY_HEARTBEAT + NOTIFY_RETRY.maximum_interval).total_seconds() + 30
            for a in (a2, a3):
                await eventually(lambda a=a: log_of(sessions, a) == [("email", 1, "lost"), ("email", 2, "sent")],
                                 timeout=retry)
                await eventually(lambda a=a: page_sent(client, a, email_key(a)), timeout=10)
                [(attempt, ran, completed)] = await notify_runs(client, a)
                assert attempt == 2 and ran.startswith(identity(new)) and completed.startswith(identity(new))
                # The MTA read each twice, as one message: the same Message-ID and idempotency key.
                first, second = [m for m in mta.received if m["X-Vigil-Incident"] == f"INC-{a}"]
                assert first["Message-ID"] == second["Message-ID"]
                assert first["X-Vigil-Idempotency-Key"] == second["X-Vigil-Idempotency-Key"] == email_key(a)
            # a2's killed send was never answered: the recipient gets it once. a3's was answered, but the worker never
            # read the answer to record it: the provider edge, at least once, both copies one Message-ID and one key.
            assert mta.keys(mta.accepted, a2) == [email_key(a2)]
            assert mta.keys(mta.accepted, a3) == [email_key(a3)] * 2
            assert len({m["Message-ID"] for m in mta.accepted if m["X-Vigil-Incident"] == f"INC-{a3}"}) == 1

            new.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(new.proc.wait, 20) == 0, new.log.read_text()[-2000:]
