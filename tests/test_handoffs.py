"""Handoff emails on a durable timer (`vigil-handoff-<schedule id>`): the incoming on-call gets one email at each
handoff, under time skipping (`skipper.fast_forward`), never waited out; an edit moves the timer; the worker
starts timers for schedules that have none; a deleted schedule's timer ends. Real Temporal, HTTP, DB and SMTP."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkipper
from temporalio.worker import Replayer

from client.handoffs import ensure_handoffs
from tests.conftest import Inbox, Keys
from tests.helpers import eventually
from vigil.contracts import handoff_workflow_id
from vigil.models import Schedule, ScheduleLayer
from vigil.oncall import Layer, Rotation, RotationKind, oncall_in_layers
from vigil.settings import Settings
from workflows.handoff import ScheduleHandoffWorkflow

# Not under tests/histories/: that replay test runs the incident workflows only.
HISTORY = Path(__file__).parent / "fixtures" / "schedule_handoff_history.json"


async def call(api: httpx.AsyncClient, keys: Keys, method: str, path: str, body: object = None,
               status: int = 200) -> dict:
    resp = await api.request(method, f"/api/v1/{path}", json=body, headers=keys.auth(keys.admin))
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else {}


async def timers_started(handle: WorkflowHandle, count: int) -> bool:
    """The workflow has set its `count`-th timer: it planned, and is asleep until the handoff."""
    started = [e async for e in handle.fetch_history_events() if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    return len(started) >= count


def notices(inbox: Inbox, schedule: int, at_least: int = 1) -> list[EmailMessage]:
    """The schedule's handoff emails so far, once there are `at_least` of them (else an empty list)."""
    found = [m for m in inbox.messages if m["X-Vigil-Schedule"] == str(schedule)]
    return found if len(found) >= at_least else []


def expected(people: dict[int, str], start: datetime, at: datetime, minute: int) -> str:
    """Whose email the handoff at `at` goes to, from vigil.oncall itself (hourly, handing off at :`minute`)."""
    rotation = Rotation(timezone="UTC", handoff_weekday=0, handoff_time=time(0, minute), start=start.date(),
                        participants=tuple(people), kind=RotationKind.hourly)
    found = oncall_in_layers([Layer(rotation)], [], at)
    assert found is not None
    return people[found.user_id]


async def test_the_incoming_on_call_gets_one_email_at_each_handoff_and_edits_move_the_timer(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper, inbox: Inbox,
) -> None:
    tag = uuid.uuid4().hex[:6]
    people = {}
    for name in ("Alice", "Bob"):
        email = f"{name.lower()}-{tag}@example.com"
        people[(await call(api, keys, "POST", "users", {"name": name, "email": email}, 201))["id"]] = email
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    layer = {"kind": "hourly", "handoff_time": "00:00", "rotation_start": today.date().isoformat(),
             "participants": list(people)}
    schedule = await call(api, keys, "POST", "schedules", {"name": f"hourly-{tag}", "timezone": "UTC", "layers": [layer]}, 201)
    sid = schedule["id"]
    handle = client.get_workflow_handle(handoff_workflow_id(sid))
    await eventually(lambda: timers_started(handle, 1))

    # The next full hour is the next handoff: jump just past it.
    now = datetime.now(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    await skipper.fast_forward(handle, first - now + timedelta(seconds=30))
    [one] = await eventually(lambda: notices(inbox, sid))
    assert one["X-Vigil-Handoff"] == first.isoformat()
    assert one["To"] == expected(people, today, first, 0)
    assert f"hourly-{tag}" in one["Subject"] and "You are on call" in one["Subject"]

    # An hour later, the other one; the first email is not sent again.
    await eventually(lambda: timers_started(handle, 2))
    await skipper.fast_forward(handle, timedelta(hours=1))
    both = await eventually(lambda: notices(inbox, sid, 2))
    second = first + timedelta(hours=1)
    assert [m["X-Vigil-Handoff"] for m in both] == [first.isoformat(), second.isoformat()]
    assert both[1]["To"] == expected(people, today, second, 0) != both[0]["To"]
    assert len({m["Message-ID"] for m in both}) == 2

    # Handoffs move to half past: the timer moves with them (the old one would fire only at the full hour).
    await eventually(lambda: timers_started(handle, 3))
    await call(api, keys, "PATCH", f"schedules/{sid}", {"layers": [{**layer, "handoff_time": "00:30"}]})
    await eventually(lambda: timers_started(handle, 4))
    await skipper.fast_forward(handle, timedelta(minutes=31))
    moved = await eventually(lambda: notices(inbox, sid, 3))
    half_past = second + timedelta(minutes=30)
    assert moved[2]["X-Vigil-Handoff"] == half_past.isoformat()
    assert moved[2]["To"] == expected(people, today + timedelta(minutes=30), half_past, 30)
    assert len(notices(inbox, sid)) == 3

    # A deleted schedule's timer ends.
    await call(api, keys, "DELETE", f"schedules/{sid}", status=204)
    await eventually(lambda: _status(handle, WorkflowExecutionStatus.COMPLETED))

    # Its whole life (timers, emails, a signal, the end) replays against today's code.
    history = await handle.fetch_history()
    await replay(history)
    if os.environ.get("VIGIL_RECORD_HISTORIES") == "1":
        HISTORY.write_text(history.to_json())


async def replay(history: WorkflowHistory) -> None:
    replayer = Replayer(workflows=[ScheduleHandoffWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_a_committed_handoff_history_replays() -> None:
    """Determinism guard: a handoff timer recorded by the test above (VIGIL_RECORD_HISTORIES=1) still replays."""
    await replay(WorkflowHistory.from_json("replay-schedule-handoff", HISTORY.read_text()))


async def _status(handle: WorkflowHandle, status: WorkflowExecutionStatus) -> bool:
    return (await handle.describe()).status == status


async def test_the_worker_starts_a_timer_for_each_schedule_without_one(
    client: Client, settings: Settings, sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        row = Schedule(name=f"from-before-{uuid.uuid4().hex[:6]}", timezone="UTC")
        row.layers = [ScheduleLayer(position=0, handoff_time="09:00", rotation_start=datetime.now(UTC).date())]
        session.add(row)
    with sessions() as session:
        sid = session.query(Schedule.id).filter(Schedule.name == row.name).scalar()
    handle = client.get_workflow_handle(handoff_workflow_id(sid))
    try:  # schedule ids come back on SQLite: an earlier test's timer may hold this id on its own task queue
        await handle.terminate("an earlier test's schedule")
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
    assert await ensure_handoffs(client, settings, sessions) == 1
    run = (await handle.describe()).run_id
    assert await ensure_handoffs(client, settings, sessions) == 1  # a running timer is kept, not restarted
    described = await handle.describe()
    assert (described.run_id, described.status) == (run, WorkflowExecutionStatus.RUNNING)
    assert described.task_queue == settings.temporal.task_queue
    await handle.terminate("test over")
