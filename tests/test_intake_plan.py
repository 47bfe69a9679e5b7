"""The API freezes a new incident's escalation policy in the transaction that creates its row and hands it over in
the start input (issue 11): the workflow pages by it without a freeze activity first."""

from __future__ import annotations

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.conftest import Inbox, Keys
from tests.flows import handle_of, trigger
from tests.helpers import eventually
from vigil.contracts import STATE_QUERY, IncidentState


async def test_the_routed_policy_is_frozen_at_intake_and_pages_without_a_freeze_activity(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox,
) -> None:
    admin = keys.auth(keys.admin)
    user = await api.post("/api/v1/users", headers=admin, json={"name": "Alice", "email": "alice@example.com"})
    assert user.status_code == 201, user.text
    policy = await api.post("/api/v1/escalation-policies", headers=admin, json={
        "name": "checkout first", "steps": [{"name": "email", "channels": ["email"],
                                            "targets": [{"kind": "user", "id": user.json()["id"]}]}],
    })
    assert policy.status_code == 201, policy.text
    routes = await api.put("/api/v1/escalation-routes", headers=admin,
                           json=[{"service": "checkout", "policy_id": policy.json()["id"]}])
    assert routes.status_code == 200, routes.text

    number = await trigger(api, keys)  # service checkout, critical
    await eventually(lambda: any("alice@example.com" in m["To"] for m in inbox.for_incident(number)))
    handle = handle_of(client, number)
    state = await handle.query(STATE_QUERY, result_type=IncidentState)
    assert state.plan is not None and state.plan.name == "checkout first"
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "freeze_escalation_policy" not in scheduled, scheduled
    assert "send_notification" in scheduled
