"""End to end through the real ASGI app, a real worker, the dev server and real SMTP."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import attempts, save_history, trigger
from tests.helpers import eventually
from workflows.incident import IncidentWorkflow


async def test_demo_flow(
    api: httpx.AsyncClient, worker: None, keys: Keys, inbox: Inbox, client: Client,
    skipper: TimeSkipper, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys)
    admin = keys.auth(keys.admin)

    listed = await api.get("/api/v1/incidents", headers=admin)
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()["items"]] == [f"INC-{number}"]

    # The first rung: a real email over SMTP.
    await eventually(lambda: inbox.for_incident(number))
    mail = inbox.for_incident(number)[0]
    assert f"INC-{number}" in mail["Subject"] and "[critical]" in mail["Subject"]
    assert "High error rate on checkout" in mail.get_body(("plain",)).get_content()

    # Findable in the Temporal UI by its search attributes.
    async def listed_in_temporal() -> bool:
        ids = [w.id async for w in client.list_workflows(f'IncidentStatus="triggered" AND IncidentNumber="INC-{number}"')]
        return ids == [f"INC-{number}"]

    await eventually(listed_in_temporal)
    desc = await client.get_workflow_handle(f"INC-{number}").describe()
    assert await desc.static_summary() == f"INC-{number} [critical] checkout: HighErrorRate"
    assert "Group key" in (await desc.static_details() or "")

    ack = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=admin, json={"note": "on it"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "user:admin@test"

    # No SMS follows: skip well past every rung of the ladder.
    handle = client.get_workflow_handle(f"INC-{number}")
    await skipper.fast_forward(handle, timedelta(minutes=29))  # up to just before the ack times out (30 min)
    assert [a.channel for a in attempts(sessions, number)] == ["email"]

    missing = await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=admin, json={})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "validation_error"
    assert missing.json()["error"]["details"][0]["field"] == "body.resolution"

    resolved = await api.post(
        f"/api/v1/incidents/{number}/resolve", headers=admin, json={"resolution": "rolled back deploy 42"}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution"] == "rolled back deploy 42"

    again = await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=admin, json={"resolution": "again"})
    assert again.status_code == 409
    err = again.json()["error"]
    assert err["code"] == "invalid_transition"
    assert err["details"] == {"current_status": "resolved"}
    assert "resolved" in err["message"]

    assert (await api.get("/api/v1/incidents")).status_code == 401

    # The projection catches up: timeline in order, with who did what.
    async def timeline_kinds() -> list[str]:
        body = (await api.get(f"/api/v1/incidents/INC-{number}", headers=admin)).json()
        kinds = [t["kind"] for t in body["timeline"]]
        return kinds if "resolved" in kinds else []

    kinds = await eventually(timeline_kinds)
    assert kinds.index("triggered") < kinds.index("acknowledged") < kinds.index("resolved")
    state = await handle.query(IncidentWorkflow.state)
    assert state.status.value == "resolved"
    await save_history(handle, "ack_then_resolve")
