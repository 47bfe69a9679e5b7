"""Heartbeat monitors: each a durable timer (`vigil-heartbeat-<id>`) that check-ins reset over real HTTP; a miss
opens an incident through the alert path and pages, and the next check-in resolves it. Time is skipped per
workflow (`skipper.fast_forward`), never waited out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import TimeSkipper

from client.heartbeats import HeartbeatClient, HeartbeatGone
from tests.conftest import Inbox, Keys
from tests.flows import admin
from tests.helpers import eventually
from vigil.contracts import (
    HEARTBEAT_STATE,
    HeartbeatConfig,
    HeartbeatInput,
    HeartbeatState,
    Severity,
    heartbeat_workflow_id,
)
from vigil.models import Incident
from vigil.settings import Settings
from worker import build_worker

HOUR = 3600
CHECK_IN = "/api/v1/heartbeats/check-in"


async def create(api: httpx.AsyncClient, keys: Keys, **body: object) -> dict:
    """A monitor (admin); defaults: `backup`, every hour + 5 min grace."""
    body = {"name": "nightly-backup", "service": "backup", "interval_seconds": HOUR, "grace_seconds": 300, **body}
    return await admin(api, keys, "heartbeats", body)


def handle(client: Client, monitor: dict) -> WorkflowHandle:
    return client.get_workflow_handle(heartbeat_workflow_id(monitor["id"]))


async def state(client: Client, monitor: dict) -> HeartbeatState:
    return await handle(client, monitor).query(HEARTBEAT_STATE, result_type=HeartbeatState)


async def check_in(api: httpx.AsyncClient, client: Client, monitor: dict, *, method: str = "POST") -> None:
    """Check in over HTTP and wait until the workflow has taken it (so a fast-forward starts after it)."""
    before = (await state(client, monitor)).check_ins
    resp = await api.request(method, f"{CHECK_IN}/{monitor['token']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ok", "monitor": monitor["name"]}
    await eventually(lambda: _check_ins_above(client, monitor, before))


async def _check_ins_above(client: Client, monitor: dict, count: int) -> bool:
    return (await state(client, monitor)).check_ins > count


def incidents(sessions: sessionmaker[Session], service: str = "backup") -> list[Incident]:
    with sessions() as session:
        return list(session.scalars(select(Incident).where(Incident.service == service).order_by(Incident.number)))


async def monitor_status(api: httpx.AsyncClient, keys: Keys, monitor: dict) -> dict:
    resp = await api.get(f"/api/v1/heartbeats/{monitor['id']}", headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_check_ins_keep_it_quiet_a_miss_pages_and_the_next_check_in_resolves(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], inbox: Inbox, settings: Settings,
) -> None:
    monitor = await create(api, keys)
    assert monitor["check_in_url"] == f"{settings.core.public_url.rstrip('/')}{CHECK_IN}/{monitor['token']}"
    assert monitor["status"] == "waiting" and monitor["token"].startswith(monitor["token_prefix"])
    h = handle(client, monitor)

    # Three check-ins 50 minutes apart: 100 minutes in all, longer than one period (65 min), and no miss.
    await check_in(api, client, monitor)
    for method in ("GET", "POST"):
        await skipper.fast_forward(h, timedelta(minutes=50))
        await check_in(api, client, monitor, method=method)
    assert incidents(sessions) == []
    assert (await monitor_status(api, keys, monitor))["status"] == "up"

    # Silence past interval + grace: the miss opens an incident for the service, and it pages.
    await skipper.fast_forward(h, timedelta(minutes=66))
    [incident] = await eventually(lambda: incidents(sessions))
    assert incident.severity == "critical" and "nightly-backup" in incident.title
    await eventually(lambda: inbox.for_incident(incident.number))
    down = await eventually(lambda: _status_is(api, keys, monitor, "down"))
    assert down["incident"] == f"INC-{incident.number}" and down["down_since"]

    # The next check-in resolves the alert, and the incident resolves itself like any alert resolved at source.
    await check_in(api, client, monitor)
    await eventually(lambda: incidents(sessions)[0].status == "resolved")
    assert incidents(sessions)[0].resolved_by.startswith("source:")
    await eventually(lambda: _status_is(api, keys, monitor, "up"))
    assert (await state(client, monitor)).missed == 1


async def _status_is(api: httpx.AsyncClient, keys: Keys, monitor: dict, status: str) -> dict | None:
    found = await monitor_status(api, keys, monitor)
    return found if found["status"] == status else None


async def test_wrong_tokens_keys_and_bodies_are_refused(api: httpx.AsyncClient, keys: Keys, worker: None) -> None:
    monitor = await create(api, keys)
    for method in ("GET", "POST"):
        resp = await api.request(method, f"{CHECK_IN}/{monitor['token']}x")
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "not_found"
    body = {"name": "n", "service": "s", "interval_seconds": HOUR}
    assert (await api.post("/api/v1/heartbeats", json=body)).status_code == 401
    assert (await api.post("/api/v1/heartbeats", json=body, headers=keys.auth(keys.responder))).status_code == 403
    assert (await api.get("/api/v1/heartbeats", headers=keys.auth(keys.viewer))).status_code == 200
    for bad in ({"interval_seconds": 0}, {"grace_seconds": -1}, {"severity": "loud"}, {"name": ""}):
        resp = await api.post("/api/v1/heartbeats", json={**body, **bad}, headers=keys.auth(keys.admin))
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "validation_error"
    resp = await api.post("/api/v1/heartbeats", json={**body, "name": monitor["name"]}, headers=keys.auth(keys.admin))
    assert resp.status_code == 409, resp.text
    resp = await api.patch(f"/api/v1/heartbeats/{monitor['id']}", json={"paused": None}, headers=keys.auth(keys.admin))
    assert resp.status_code == 422, resp.text
    resp = await api.patch("/api/v1/heartbeats/999999", json={"paused": True}, headers=keys.auth(keys.admin))
    assert resp.status_code == 404, resp.text


async def test_paused_monitor_is_never_missed_and_resuming_gives_a_whole_period(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    monitor = await create(api, keys)
    h = handle(client, monitor)
    paused = await admin(api, keys, f"heartbeats/{monitor['id']}", {"paused": True}, method="PATCH")
    assert paused["status"] == "paused" and paused["paused"] is True
    assert (await state(client, monitor)).deadline is None
    await skipper.fast_forward(h, timedelta(hours=3))
    assert incidents(sessions) == []

    await admin(api, keys, f"heartbeats/{monitor['id']}", {"paused": False}, method="PATCH")
    await skipper.fast_forward(h, timedelta(minutes=60))  # within the period counted from the resume
    assert incidents(sessions) == []
    await skipper.fast_forward(h, timedelta(minutes=6))
    await eventually(lambda: incidents(sessions))


async def test_interval_change_goes_to_the_running_timer_and_keeps_the_last_check_in(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    monitor = await create(api, keys)
    h = handle(client, monitor)
    await check_in(api, client, monitor)
    checked = (await state(client, monitor)).last_check_in
    changed = await admin(api, keys, f"heartbeats/{monitor['id']}", {"interval_seconds": 600, "grace_seconds": 60},
                          method="PATCH")
    assert (changed["interval_seconds"], changed["grace_seconds"]) == (600, 60)
    live = await state(client, monitor)
    assert live.config.interval_seconds == 600 and live.check_ins == 1 and live.last_check_in == checked
    assert live.deadline == checked + timedelta(seconds=660)  # counted from the last check-in, not the change
    await skipper.fast_forward(h, timedelta(minutes=12))  # under the old hour, past the new 11 minutes
    await eventually(lambda: incidents(sessions))


async def test_deletion_stops_the_workflow_resolves_its_alert_and_kills_the_token(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session], settings: Settings,
) -> None:
    monitor = await create(api, keys)
    h = handle(client, monitor)
    await skipper.fast_forward(h, timedelta(minutes=66))
    [incident] = await eventually(lambda: incidents(sessions))
    await eventually(lambda: _status_is(api, keys, monitor, "down"))

    resp = await api.delete(f"/api/v1/heartbeats/{monitor['id']}", headers=keys.auth(keys.admin))
    assert resp.status_code == 204, resp.text
    await h.result()
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED
    await eventually(lambda: incidents(sessions)[0].status == "resolved")
    assert (await api.post(f"{CHECK_IN}/{monitor['token']}")).status_code == 404
    assert (await api.get(f"/api/v1/heartbeats/{monitor['id']}", headers=keys.auth(keys.admin))).status_code == 404
    # A late check-in that read the row before the deletion cannot bring the deleted monitor back.
    with pytest.raises(HeartbeatGone):
        await HeartbeatClient(settings, _getter(client)).check_in(HeartbeatInput(monitor_id=monitor["id"], config=_config()))
    assert [i.number for i in incidents(sessions)] == [incident.number]


def _config() -> HeartbeatConfig:
    return HeartbeatConfig(name="nightly-backup", service="backup", severity=Severity.critical,
                           interval_seconds=HOUR, grace_seconds=300)


def _getter(client: Client):  # noqa: ANN202
    async def get() -> Client:
        return client

    return get


async def test_a_restarted_worker_keeps_the_timer(
    api: httpx.AsyncClient, keys: Keys, client: Client, skipper: TimeSkipper, settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    monitor = await create(api, keys)
    h = handle(client, monitor)
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with build_worker(client, settings, sessions, executor):
            await check_in(api, client, monitor)
            await skipper.fast_forward(h, timedelta(minutes=30))
    # No worker now; a new one (another process, after a deploy) replays the history and keeps the deadline.
    with ThreadPoolExecutor(max_workers=20) as executor:
        async with build_worker(client, settings, sessions, executor):
            await skipper.fast_forward(h, timedelta(minutes=30))
            assert incidents(sessions) == []
            await skipper.fast_forward(h, timedelta(minutes=6))
            await eventually(lambda: incidents(sessions))


async def test_continue_as_new_carries_the_deadline_and_the_counts(
    worker: None, client: Client, skipper: TimeSkipper, settings: Settings, sessions: sessionmaker[Session],
) -> None:
    hb = HeartbeatClient(settings, _getter(client))
    inp = HeartbeatInput(monitor_id=10**9, config=_config(), check_ins_per_run=3)
    await hb.start(inp)
    h = client.get_workflow_handle(heartbeat_workflow_id(inp.monitor_id))
    first_run = (await h.describe()).run_id
    for n in range(1, 8):
        await hb.check_in(inp)
        await eventually(lambda n=n: _taken(h, n))
    live = await h.query(HEARTBEAT_STATE, result_type=HeartbeatState)
    assert live.check_ins == 7 and live.deadline == live.last_check_in + timedelta(seconds=HOUR + 300)
    assert (await h.describe()).run_id != first_run
    await eventually(lambda: _runs(client, h.id, 3))  # 7 check-ins at 3 per run
    await skipper.fast_forward(h, timedelta(minutes=66))
    await eventually(lambda: incidents(sessions))


async def _runs(client: Client, workflow_id: str, count: int) -> bool:
    return len([e async for e in client.list_workflows(f'WorkflowId = "{workflow_id}"')]) == count


async def _taken(h: WorkflowHandle, n: int) -> bool:
    return (await h.query(HEARTBEAT_STATE, result_type=HeartbeatState)).check_ins >= n


async def test_a_workflow_terminated_by_hand_comes_back_with_the_next_check_in_and_resolves_its_alert(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    sessions: sessionmaker[Session],
) -> None:
    monitor = await create(api, keys)
    h = handle(client, monitor)
    await skipper.fast_forward(h, timedelta(minutes=66))
    await eventually(lambda: incidents(sessions))
    await eventually(lambda: _status_is(api, keys, monitor, "down"))
    await h.terminate("by hand, in the Temporal UI")

    # The check-in starts the timer again from the database's view (missed, episode 1) and resolves that alert.
    resp = await api.post(f"{CHECK_IN}/{monitor['token']}")
    assert resp.status_code == 200, resp.text
    assert (await client.get_workflow_handle(h.id).describe()).status == WorkflowExecutionStatus.RUNNING
    await eventually(lambda: incidents(sessions)[0].status == "resolved")
    await eventually(lambda: _status_is(api, keys, monitor, "up"))
