"""What one incident costs Temporal: the history of a whole lifecycle stays small (issue 11).

Every workflow task, activity task and event is server work: in a burst of new incidents it is what decides
when the last first page goes out. The figures are exact (a history is deterministic), so they are tested
here; how fast it all runs is measured by bench/, not here.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import handle_of, save_history, trigger
from tests.helpers import eventually

# Events the dev server adds for time skipping; a production history has none of them.
SKIPPING = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED,
}
# Issue 11: one lifecycle in at most 60 events (it took 83: 13 workflow tasks, 9 activities, 4 upserts).
BUDGET = 60


async def lifecycle_events(handle: WorkflowHandle) -> list[EventType.ValueType]:
    return [e.event_type async for e in handle.fetch_history_events() if e.event_type not in SKIPPING]


async def activity_tasks(handle: WorkflowHandle) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_a_full_lifecycle_fits_the_history_budget(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client, skipper: TimeSkipper,
) -> None:
    """Trigger → first page → acknowledge → resolve → closed after the reopen window, over the real API."""
    admin = keys.auth(keys.admin)
    number = await trigger(api, keys)
    await eventually(lambda: inbox.for_incident(number))
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=admin, json={})).status_code == 200
    resolved = await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=admin, json={"resolution": "fixed"})
    assert resolved.status_code == 200, resolved.text
    handle = handle_of(client, number)
    await skipper.fast_forward(handle, timedelta(minutes=6))  # past the reopen window (5 min)
    assert (await handle.result())["status"] == "closed"

    # The committed histories of this lifecycle replay in tests/test_replay.py: local_projection.json (local
    # projections, the policy from the start input, transitions answered with the state) and pages_first.json
    # (the first workflow task no longer waits for its projection).
    await save_history(handle, "pages_first")
    events = await lifecycle_events(handle)
    kinds = Counter(EventType.Name(e).removeprefix("EVENT_TYPE_") for e in events)
    assert len(events) <= BUDGET, f"{len(events)} events: {dict(kinds.most_common())}"
    # The projections, the group release and the postmortem check run inside workflow tasks (local
    # activities), and the API froze the policy with the incident's row (IncidentInput.plan): the one activity
    # task left is the page itself.
    assert await activity_tasks(handle) == ["send_notification"]
    timeline = (await api.get(f"/api/v1/incidents/INC-{number}", headers=admin)).json()["timeline"]
    assert [t["kind"] for t in timeline if t["kind"] in ("triggered", "acknowledged", "resolved", "closed")] == [
        "triggered", "acknowledged", "resolved", "closed",
    ]


async def test_pages_and_the_next_rung_timer_do_not_wait_for_the_projection(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client,
) -> None:
    """The workflow task that starts pages completes with the page and the next rung's timer, and no local
    activity: Temporal sends a task's commands only when it completes, so a projection in that task delayed the
    page and started the timer late by as long as the write took (a second under load). The entries it recorded
    reach the database in the next task, the one the page's result brings."""
    admin = keys.auth(keys.admin)
    number = await trigger(api, keys)
    await eventually(lambda: inbox.for_incident(number))
    handle = handle_of(client, number)

    async def projected() -> list[str]:
        body = (await api.get(f"/api/v1/incidents/INC-{number}", headers=admin)).json()
        kinds = [t["kind"] for t in body["timeline"]]
        assert "notified" in kinds, kinds
        return kinds

    assert (await eventually(projected))[:4] == ["triggered", "alert", "policy", "notified"]

    events = [e async for e in handle.fetch_history_events() if e.event_type not in SKIPPING]
    first_done = next(i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    commands = events[first_done + 1:next(i for i, e in enumerate(events) if i > first_done and e.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED))]
    kinds = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in commands]
    assert "ACTIVITY_TASK_SCHEDULED" in kinds and "TIMER_STARTED" in kinds, kinds
    local = [e for e in commands if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
             and e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
    assert not local, f"the first workflow task waited for a local activity: {kinds}"


def task_commands(events: list, index: int) -> list:
    """The events the workflow task before events[index] recorded with it (its commands and markers)."""
    done = max(i for i in range(index) if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    end = next((i for i in range(done + 1, len(events)) if events[i].event_type in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)), len(events))
    return events[done + 1:end]


async def test_a_re_trigger_projects_its_status_with_its_pages(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client, skipper: TimeSkipper,
) -> None:
    """Pages first, but not a status change: when the ack times out, the task that re-triggers the incident and
    pages again also writes the row's new status (lists and filters read it; the page's result may be minutes
    away when the mail server is down)."""
    number = await trigger(api, keys)
    await eventually(lambda: len(inbox.for_incident(number)) == 1)
    acked = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
    assert acked.status_code == 200, acked.text
    handle = handle_of(client, number)
    await skipper.fast_forward(handle, timedelta(minutes=31))  # the policy's ack timeout is 30 minutes
    await eventually(lambda: len(inbox.for_incident(number)) == 2)

    events = [e async for e in handle.fetch_history_events() if e.event_type not in SKIPPING]
    pages = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
             and e.activity_task_scheduled_event_attributes.activity_type.name == "send_notification"]
    assert len(pages) == 2
    first, again = task_commands(events, pages[0]), task_commands(events, pages[1])
    local = lambda batch: [e for e in batch if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED  # noqa: E731
                           and e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
    assert not local(first), "the first page waited for the projection"
    assert local(again), "the re-trigger's new status waited for the page's result"
