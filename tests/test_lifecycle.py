"""An incident's workflow stopped from outside Vigil: a cancel request from the Temporal UI or CLI is an operator
action (recorded with who asked, resolved, synced to Jira, closed: never CANCELED), and a workflow terminated
outside Vigil is found by the reconciler, shown as `ended` in the API and paged to the operator."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from tests.conftest import Inbox, Keys
from tests.flows import attempts, handle_of, save_history, trigger
from tests.helpers import eventually, pd_event
from tests.jira_server import JiraServer
from vigil.contracts import ReconcileInput, ReconcileResult
from vigil.models import AlertRow, Incident, NotificationAttempt, utcnow
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow
from workflows.reconcile import OutboxReconcileWorkflow


@pytest.fixture
def settings(settings: Settings, jira_server: JiraServer) -> Settings:
    return settings.model_copy(update={"jira": jira_server.cloud_settings()})


async def incident(api: httpx.AsyncClient, keys: Keys, number: int) -> dict:
    resp = await api.get(f"/api/v1/incidents/INC-{number}", headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_cancel_request_resolves_and_closes_with_who_asked_and_syncs_jira(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
    sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="cancel-1")
    handle = handle_of(client, number)
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    key = await eventually(lambda: jira_key(handle))  # linked, so the link's entry is not last on the timeline

    await handle.cancel(reason="clicked by mistake")
    # It finishes on its own, COMPLETED: the cancel became a resolution, not a CANCELED workflow.
    result = await handle.result()
    assert result["status"] == "closed"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    body = await eventually(lambda: _closed(api, keys, number))
    kinds = [t["kind"] for t in body["timeline"]]
    assert kinds[-3:] == ["cancel_requested", "resolved", "closed"], kinds
    asked = body["timeline"][-3]
    assert asked["message"] == f"Cancellation requested in Temporal by {client.identity}: clicked by mistake"
    assert asked["actor"] == f"user:{client.identity} (Temporal cancel)"
    assert body["resolution"] == f"Cancelled in Temporal by {client.identity}: clicked by mistake"
    assert body["workflow_status"] is None

    # Jira follows as for any resolve and close.
    await eventually(lambda: jira_server.issues[key]["fields"]["status"]["name"] == "Done")
    # The resolution's comment is its own Jira call, which may land after the transition.
    await eventually(lambda: any("Cancelled in Temporal" in c["body"] for c in jira_server.comments(key)))
    # The workflow is gone and the API says why: 409 closed, not "retry shortly".
    resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
    assert resp.status_code == 409, resp.text
    await save_history(handle, "cancelled")


async def test_cancel_request_on_a_resolved_incident_closes_it_without_the_reopen_window(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="cancel-2")
    handle = handle_of(client, number)
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await eventually(lambda: jira_key(handle))
    resp = await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=keys.auth(keys.responder),
                          json={"resolution": "rolled back"})
    assert resp.status_code == 200, resp.text

    await handle.cancel()
    assert (await handle.result())["status"] == "closed"
    body = await eventually(lambda: _closed(api, keys, number))
    assert [t["kind"] for t in body["timeline"]][-3:] == ["resolved", "cancel_requested", "closed"]
    assert body["resolution"] == "rolled back"  # the responder's resolution stands
    assert body["timeline"][-2]["message"] == f"Cancellation requested in Temporal by {client.identity}: no reason given"


async def jira_key(handle: WorkflowHandle) -> str | None:
    return (await handle.query(IncidentWorkflow.state)).jira_key


async def _closed(api: httpx.AsyncClient, keys: Keys, number: int) -> dict | None:
    body = await incident(api, keys, number)
    return body if body["status"] == "closed" and body["timeline"][-1]["kind"] == "closed" else None


async def reconcile(client: Client, settings: Settings) -> ReconcileResult:
    """One run of the reconciler, as its Schedule starts it."""
    return await client.execute_workflow(
        OutboxReconcileWorkflow.run, ReconcileInput(), id=f"reconcile-{uuid.uuid4()}",
        task_queue=settings.temporal.task_queue,
    )


def row(sessions: sessionmaker[Session], number: int) -> Incident:
    with sessions() as session:
        return session.get_one(Incident, number)


def operator_incidents(sessions: sessionmaker[Session]) -> list[Incident]:
    with sessions() as session:
        return list(session.scalars(select(Incident).where(Incident.service == "vigil")))


async def test_terminated_workflow_is_found_shown_as_ended_and_pages_the_operator(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
    sessions: sessionmaker[Session], inbox: Inbox,
) -> None:
    number = await trigger(api, keys, dedup_key="terminated-1")
    handle = handle_of(client, number)
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await handle.terminate(reason="cleaning up")

    # Visibility is eventually consistent: the reconciler finds it on one of its next runs.
    async def found() -> bool:
        await reconcile(client, settings)
        return row(sessions, number).status == "ended"

    await eventually(found, timeout=30)
    body = await incident(api, keys, number)
    assert (body["status"], body["workflow_status"]) == ("ended", "terminated")
    assert body["ended_at"] is not None
    last = body["timeline"][-1]
    assert last["kind"] == "ended" and last["actor"] == "system:temporal"
    assert last["message"].startswith(f"Workflow terminated outside Vigil by {client.identity}: cleaning up:")
    listed = await api.get("/api/v1/incidents?status=ended", headers=keys.auth(keys.viewer))
    assert [i["id"] for i in listed.json()["items"]] == [f"INC-{number}"]

    # The operator is paged through Vigil's own integration, once however often the check runs again.
    [operator] = operator_incidents(sessions)
    assert f"INC-{operator.number}" in last["message"]
    await eventually(lambda: len(inbox.for_incident(operator.number)) == 1)
    await reconcile(client, settings)
    assert len(operator_incidents(sessions)) == 1
    assert row(sessions, number).status == "ended"

    # A clear 409 instead of "retry shortly" forever; a new alert of the group opens a new incident that pages.
    resp = await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=keys.auth(keys.responder))
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["details"] == {"current_status": "ended"}
    # The source's acknowledge and resolve of its alert no longer reach the ended incident: accepted, not a 500.
    for action in ("acknowledge", "resolve"):
        resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "terminated-1", action=action))
        assert resp.status_code == 202, (action, resp.text)
    again = await trigger(api, keys, dedup_key="terminated-2")
    assert again != number
    await eventually(lambda: [a.status for a in attempts(sessions, again)] == ["sent"])


async def test_an_attempt_left_sending_with_no_retry_is_closed_as_lost(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="lost-1")
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    with sessions.begin() as session:  # the last attempt of a page, its worker killed: nothing retries it
        for key, started in (("old", utcnow() - timedelta(minutes=10)), ("running", utcnow())):
            session.add(NotificationAttempt(
                incident_number=number, idempotency_key=f"INC-{number}/{key}", attempt=4, step="sms on-call",
                channel="sms", target="+15550100100", provider="console", status="sending", started_at=started,
            ))

    await reconcile(client, settings)
    rows = {a.idempotency_key: a for a in attempts(sessions, number)}
    assert (rows[f"INC-{number}/old"].status, rows[f"INC-{number}/running"].status) == ("lost", "sending")
    assert "no outcome recorded" in (rows[f"INC-{number}/old"].error or "")


async def test_an_incident_whose_workflow_never_started_is_found_and_pages_the_operator(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, settings: Settings,
    sessions: sessionmaker[Session], inbox: Inbox,
) -> None:
    """A row left by an older version (an incident without alerts), or one whose every alert was dead-lettered
    before its workflow could start, is open in the API while nothing will ever page for it."""
    live = await trigger(api, keys, dedup_key="live-1")
    await eventually(lambda: [a.status for a in attempts(sessions, live)] == ["sent"])
    with sessions.begin() as session:
        integration_id = session.get_one(Incident, live).integration_id
        old = utcnow() - timedelta(minutes=10)

        def stranded(title: str, created_at: datetime) -> Incident:
            row = Incident(group_key=f"service=x|alertname={title}", integration_id=integration_id, service="x",
                           severity="critical", title=title, status="triggered", created_at=created_at)
            session.add(row)
            session.flush()
            return row

        phantom, dead, fresh = stranded("phantom", old), stranded("dead", old), stranded("fresh", utcnow())
        session.add(AlertRow(
            incident_number=dead.number, integration_id=integration_id, fingerprint="dead-1", status="firing",
            summary="refused", severity="critical", service="x", labels={}, annotations={},
            delivery_attempts=5, delivery_error="refused", dead_lettered_at=utcnow(),
        ))
        numbers = phantom.number, dead.number, fresh.number

    await reconcile(client, settings)
    statuses = {n: (row(sessions, n).status, row(sessions, n).workflow_status) for n in (*numbers, live)}
    assert statuses == {
        numbers[0]: ("ended", "not_started"), numbers[1]: ("ended", "not_started"),
        numbers[2]: ("triggered", None), live: ("triggered", None),
    }
    body = await incident(api, keys, numbers[1])
    assert "never started" in body["timeline"][-1]["message"]
    [operator] = operator_incidents(sessions)
    await eventually(lambda: inbox.for_incident(operator.number))
    state = await handle_of(client, operator.number).query(IncidentWorkflow.state)
    assert len(state.alerts) == 2
