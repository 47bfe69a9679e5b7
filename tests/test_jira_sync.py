"""Vigil → Jira through the real `jira` client against tests/jira_server.py: one issue per incident (even
across a crash between "Jira created it" and "Vigil stored it"), changes applied in order, Jira outages
caught up without delaying the incident, permanent refusals recorded and not retried."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Keys
from tests.flows import handle_of, save_history, trigger
from tests.helpers import eventually
from tests.jira_server import JiraServer, JiraUser
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow
from vigil.contracts import jira_sync_workflow_id


@pytest.fixture
def settings(settings: Settings, jira_server: JiraServer) -> Settings:
    return settings.model_copy(update={"jira": jira_server.cloud_settings()})


async def jira_view(api: httpx.AsyncClient, keys: Keys, number: int) -> dict:
    resp = await api.get(f"/api/v1/incidents/INC-{number}/jira", headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


def only_issue(jira: JiraServer) -> dict:
    [issue] = jira.issues.values()
    return issue


async def test_incident_round_trip_to_jira(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number = await trigger(api, keys, dedup_key="jira-1")
    handle = handle_of(client, number)
    key = await eventually(lambda: linked(handle), timeout=15)
    issue = only_issue(jira_server)
    fields = issue["fields"]
    assert issue["key"] == key and fields["project"]["key"] == "OPS"
    assert fields["labels"] == ["vigil", f"vigil-INC-{number}"] and fields["priority"]["name"] == "Highest"
    assert fields["summary"].startswith(f"INC-{number} [critical] checkout:")
    assert f"/api/v1/incidents/INC-{number}" in fields["description"] and f"/workflows/INC-{number}" in fields["description"]

    headers = keys.auth(keys.responder)
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers,
                           json={"note": "looking"})).status_code == 200
    assert (await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=headers,
                           json={"resolution": "rolled back"})).status_code == 200
    await eventually(lambda: [t["name"] for t in jira_server.transitions_applied(key)] == ["In Progress", "Done"])
    await eventually(lambda: len(jira_server.comments(key)) == 2)
    bodies = [c["body"] for c in jira_server.comments(key)]
    assert "looking" in bodies[0] and "rolled back" in bodies[1]
    assert jira_server.issues[key]["fields"]["status"]["name"] == "Done"

    # Findable in the Temporal UI by its Jira key; the sync log is in the API.
    await eventually(lambda: _listed(client, key, number), timeout=15)  # visibility is eventually consistent
    view = await jira_view(api, keys, number)
    assert view["jira_key"] == key and view["issue_url"].endswith(f"/browse/{key}")
    assert [e["operation"] for e in view["log"]] == [
        "create", "transition:acknowledged", "comment", "transition:resolved", "comment",
    ], view["log"]
    assert all(e["status"] == "ok" and e["latency_ms"] is not None for e in view["log"])
    await save_history(handle, "jira_linked")
    await save_history(client.get_workflow_handle(jira_sync_workflow_id(number)), "jira_sync")


async def linked(handle) -> str | None:  # noqa: ANN001
    return (await handle.query(IncidentWorkflow.state)).jira_key


async def _listed(client: Client, key: str, number: int) -> bool:
    found = {w.id async for w in client.list_workflows(f'JiraKey = "{key}"')}
    return {f"INC-{number}", jira_sync_workflow_id(number)} <= found


async def test_a_note_in_vigil_becomes_a_jira_comment(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number = await trigger(api, keys, dedup_key="jira-note")
    key = await eventually(lambda: linked(handle_of(client, number)), timeout=15)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/notes", headers=keys.auth(keys.responder),
                          json={"body": "customer impact: checkout only"})
    assert resp.status_code == 200, resp.text
    await eventually(lambda: [c["body"] for c in jira_server.comments(key)] == [
        "Note from user:rita@test in Vigil: customer impact: checkout only"])
    blank = await api.post(f"/api/v1/incidents/INC-{number}/notes", headers=keys.auth(keys.responder), json={"body": " "})
    assert blank.status_code == 422


async def test_assignee_is_mapped_by_email_to_a_jira_account(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    dana = jira_server.add_user(JiraUser("acc-dana", "dana@example.com", "Dana Ops", "dana"))
    number = await trigger(api, keys, dedup_key="jira-assign")
    key = await eventually(lambda: linked(handle_of(client, number)), timeout=15)
    headers = keys.auth(keys.responder)
    assert (await api.post(f"/api/v1/incidents/INC-{number}/assign", headers=headers,
                           json={"assignee": "dana@example.com"})).status_code == 200
    await eventually(lambda: (jira_server.issues[key]["fields"]["assignee"] or {}).get("accountId") == dana.account_id)
    # An email Jira does not know is recorded as skipped, not retried forever.
    assert (await api.post(f"/api/v1/incidents/INC-{number}/assign", headers=headers,
                           json={"assignee": "nobody@example.com"})).status_code == 200
    skipped = await eventually(lambda: _entry(api, keys, number, "assign", status="skipped"))
    assert "nobody@example.com" in skipped["error"]
    assert (await handle_of(client, number).query(IncidentWorkflow.state)).assignee == "nobody@example.com"


async def test_rate_limited_by_jira_waits_and_goes_on(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    """429 with Retry-After: retried after it (not at once, not given up); the incident is not held up."""
    jira_server.fail_next(1, 429, retry_after=3, method="POST", path_prefix="/rest/api/2/issue")
    number = await trigger(api, keys, dedup_key="jira-429")
    await eventually(lambda: linked(handle_of(client, number)), timeout=20)
    log = (await jira_view(api, keys, number))["log"]
    assert [(e["operation"], e["status"]) for e in log[:2]] == [("create", "retrying"), ("create", "ok")]
    assert "HTTP 429" in log[0]["error"] and jira_server.created_count == 1
    # Retry-After (3 s), not the policy's first interval (2 s), set the wait.
    gap = datetime.fromisoformat(log[1]["created_at"]) - datetime.fromisoformat(log[0]["created_at"])
    assert gap >= timedelta(seconds=3), gap


async def test_below_the_severity_no_issue_until_it_rises(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number = await trigger(api, keys, dedup_key="jira-low", severity="warning")
    handle = handle_of(client, number)
    await eventually(lambda: _has_plan(handle))
    assert jira_server.created_count == 0
    # A critical alert joins the group: the incident's severity rises, and now it gets an issue.
    await trigger(api, keys, dedup_key="jira-low-2", severity="critical")
    await eventually(lambda: linked(handle), timeout=15)
    assert jira_server.created_count == 1


async def _has_plan(handle) -> bool:  # noqa: ANN001
    return (await handle.query(IncidentWorkflow.state)).plan is not None


async def test_jira_down_never_delays_the_incident_and_catches_up_in_order(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, skipper: TimeSkipper,
    jira_server: JiraServer, sessions: sessionmaker[Session],
) -> None:
    jira_server.down()
    number = await trigger(api, keys, dedup_key="jira-down")
    headers = keys.auth(keys.responder)
    # The incident's own lifecycle goes on while Jira refuses connections.
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers)).status_code == 200
    assert (await api.post(f"/api/v1/incidents/INC-{number}/resolve", headers=headers,
                           json={"resolution": "fixed"})).status_code == 200
    await eventually(lambda: _retrying(api, keys, number))

    jira_server.up()
    sync = client.get_workflow_handle(jira_sync_workflow_id(number))
    await skipper.fast_forward(sync, timedelta(minutes=6))  # past the capped backoff (5 min)
    key = await eventually(lambda: linked(handle_of(client, number)), timeout=20)
    await eventually(lambda: [t["name"] for t in jira_server.transitions_applied(key)] == ["In Progress", "Done"],
                     timeout=20)
    assert jira_server.created_count == 1
    assert "fixed" in jira_server.comments(key)[-1]["body"]


async def _retrying(api: httpx.AsyncClient, keys: Keys, number: int) -> bool:
    log = (await jira_view(api, keys, number))["log"]
    return any(e["status"] == "retrying" and e["operation"] == "create" for e in log)


async def test_crash_between_create_and_record_makes_no_second_issue(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
    skipper: TimeSkipper,
) -> None:
    """Jira stores the issue but its answer never arrives (the worker might as well have died): the retry
    finds the issue by its label and records it instead of creating another."""
    jira_server.crash_after_create()
    number = await trigger(api, keys, dedup_key="jira-crash")
    await eventually(lambda: _retrying(api, keys, number))
    await skipper.fast_forward(client.get_workflow_handle(jira_sync_workflow_id(number)), timedelta(seconds=30))
    key = await eventually(lambda: linked(handle_of(client, number)), timeout=20)
    assert jira_server.created_count == 1 and list(jira_server.issues) == [key]


async def test_a_refused_change_is_recorded_and_not_retried(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    jira_server.reject_field("priority", "Priority name 'Highest' is not valid")
    number = await trigger(api, keys, dedup_key="jira-400")
    failed = await eventually(lambda: _failed(api, keys, number))
    assert failed["operation"] == "create" and "HTTP 400" in failed["error"]
    # The incident is unaffected, and later changes are skipped for want of an issue, not retried.
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge",
                           headers=keys.auth(keys.responder))).status_code == 200
    skipped = await eventually(lambda: _entry(api, keys, number, "transition:acknowledged"))
    assert skipped["status"] == "skipped"
    log = (await jira_view(api, keys, number))["log"]
    assert sum(1 for e in log if e["operation"] == "create") == 1
    assert jira_server.created_count == 0


async def _failed(api: httpx.AsyncClient, keys: Keys, number: int) -> dict | None:
    return next((e for e in (await jira_view(api, keys, number))["log"] if e["status"] == "failed"), None)


async def _entry(
    api: httpx.AsyncClient, keys: Keys, number: int, operation: str, status: str | None = None,
) -> dict | None:
    log = (await jira_view(api, keys, number))["log"]
    return next((e for e in log if e["operation"] == operation and status in (None, e["status"])), None)
