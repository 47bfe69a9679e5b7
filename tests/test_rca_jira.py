"""The completed postmortem on the incident's Jira issue, through the real `jira` client against tests/jira_server.py
(Jira Cloud and Data Center): its PDF attached once, each action item a linked issue created once, even when an
answer is lost and the activity retried, when Jira is down at completion, or when the op runs a second time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.jira import JiraActivities
from tests.conftest import Keys, free_port
from tests.flows import handle_of, save_history, trigger
from tests.helpers import eventually
from tests.jira_server import JiraServer, JiraUser
from vigil.contracts import JiraCallInput, JiraIssueFields, JiraOp, JiraOpKind, Severity, jira_sync_workflow_id
from vigil.settings import JiraSettings, RcaSettings, Settings
from workflows.incident import IncidentWorkflow

ACTIONS = """| Action | Owner | Due date |
|---|---|---|
| Alert on queue depth | bob@example.com | 2026-04-01 |
| Write the rollback runbook | nobody@example.com | soon |
"""


@pytest.fixture(params=["Cloud", "Server"])
def jira_server(request: pytest.FixtureRequest) -> Iterator[JiraServer]:
    """Jira Cloud and Data Center; Bob is a Jira user, nobody@example.com is not."""
    with JiraServer(deployment=request.param) as server:
        server.add_user(JiraUser("5b10bob0000000000000000b", "bob@example.com", "Bob Builder", "bob"))
        yield server


def jira_settings(jira: JiraServer) -> JiraSettings:
    if jira.cloud:
        return jira.cloud_settings()
    return JiraSettings(url=jira.base_url, pat=SecretStr(jira.pat), project_key="OPS", timeout_seconds=5)


@pytest.fixture
def settings(settings: Settings, jira_server: JiraServer) -> Settings:
    """Critical incidents need a postmortem (reminders far away); Prometheus configured but down."""
    return settings.model_copy(update={
        "jira": jira_settings(jira_server),
        "rca": RcaSettings(required_severities="critical,high", remind_after_hours=24, remind_every_hours=24,
                           prometheus_url=f"http://127.0.0.1:{free_port()}", prometheus_timeout_seconds=2),
    })


async def linked_key(handle: WorkflowHandle) -> str | None:
    return (await handle.query(IncidentWorkflow.state)).jira_key


async def drafted(handle: WorkflowHandle) -> bool:
    pm = (await handle.query(IncidentWorkflow.state)).postmortem
    return pm is not None and pm.progress.sections_total > 0


async def resolved_and_written(api: httpx.AsyncClient, keys: Keys, client: Client, dedup: str
                               ) -> tuple[int, WorkflowHandle, str]:
    """A critical incident with its Jira issue, resolved, its summary, root cause and action items written."""
    number = await trigger(api, keys, dedup)
    handle = handle_of(client, number)
    key = await eventually(lambda: linked_key(handle), timeout=20)
    auth = keys.auth(keys.responder)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/resolve", json={"resolution": "rolled back"}, headers=auth)
    assert resp.status_code == 200, resp.text
    await eventually(lambda: drafted(handle), timeout=20)
    sections = {"summary": "Checkout failed for 20 minutes.", "root_cause": "A bad deploy.", "action_items": ACTIONS}
    resp = await api.patch(f"/api/v1/incidents/INC-{number}/postmortem", json={"sections": sections}, headers=auth)
    assert resp.status_code == 200, resp.text
    return number, handle, key


async def complete(api: httpx.AsyncClient, keys: Keys, number: int) -> None:
    resp = await api.post(f"/api/v1/incidents/INC-{number}/postmortem/complete", headers=keys.auth(keys.responder))
    assert resp.status_code == 200, resp.text


def action_issues(jira: JiraServer, number: int) -> dict[str, dict[str, Any]]:
    """The incident's action-item issues by summary."""
    return {i["fields"]["summary"]: i for i in jira.issues.values()
            if f"vigil-INC-{number}-action" in i["fields"]["labels"]}


def posts(jira: JiraServer, path: str) -> int:
    return sum(1 for r in jira.requests if r.method == "POST" and r.path == path)


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def test_completion_attaches_the_pdf_and_creates_linked_action_items_once(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
    sessions: sessionmaker[Session], settings: Settings,
) -> None:
    number, handle, key = await resolved_and_written(api, keys, client, "rca-jira-1")
    # Each first answer is lost after Jira acted: the attachment, the first item's create and its link.
    jira_server.drop_next(method="POST", path=f"/rest/api/2/issue/{key}/attachments")
    jira_server.drop_next(method="POST", path="/rest/api/2/issue")
    jira_server.drop_next(method="POST", path="/rest/api/2/issueLink")
    await complete(api, keys, number)

    attached = await eventually(lambda: jira_server.attachments(key), timeout=30)
    items = await eventually(lambda: _two_linked(jira_server, number), timeout=30)
    await eventually(lambda: _logged(api, keys, number, "action_items"), timeout=30)
    [pdf] = attached
    assert pdf["filename"] == f"INC-{number}-postmortem.pdf" and pdf["mimeType"] == "application/pdf"
    text = pdf_text(pdf["data"])
    assert "Status: complete" in text and "A bad deploy." in text and "Alert on queue depth" in text

    queue, runbook = items[f"INC-{number}: Alert on queue depth"], items[f"INC-{number}: Write the rollback runbook"]
    assert queue["fields"]["assignee"]["emailAddress"] == "bob@example.com"
    assert queue["fields"]["duedate"] == "2026-04-01"
    assert runbook["fields"]["assignee"] is None and runbook["fields"]["duedate"] is None
    assert "nobody@example.com" in runbook["fields"]["description"] and "soon" in runbook["fields"]["description"]
    assert {(link["type"], link["inward"]) for link in jira_server.links} == {("Relates", key)}
    assert {link["outward"] for link in jira_server.links} == {queue["key"], runbook["key"]}
    linked = {(lk.get("outwardIssue") or {}).get("key") for lk in jira_server.issues[key]["fields"]["issuelinks"]}
    assert linked == {queue["key"], runbook["key"]}
    # Retried after each lost answer, yet nothing twice: one upload, two creates, two links asked for once more.
    assert posts(jira_server, f"/rest/api/2/issue/{key}/attachments") == 1
    assert posts(jira_server, "/rest/api/2/issue") == 1 + 2  # the incident's issue and the two items
    assert posts(jira_server, "/rest/api/2/issueLink") == 2

    # A second run of both ops (a re-completion, a replayed queue) finds everything and adds nothing.
    activities = JiraActivities(sessions, settings.jira)
    issue = JiraIssueFields(number=number, title="t", severity=Severity.critical, service="checkout",
                            incident_url=f"http://vigil.test/api/v1/incidents/INC-{number}", temporal_url="")
    env = ActivityEnvironment()
    for kind in (JiraOpKind.attach_postmortem, JiraOpKind.action_items):
        inp = JiraCallInput(project_key="OPS", issue=issue, key=key, op=JiraOp(kind=kind))
        env.run(activities.apply_jira_op, inp)
    assert len(jira_server.attachments(key)) == 1 and len(action_issues(jira_server, number)) == 2
    assert posts(jira_server, "/rest/api/2/issueLink") == 2


def _two_linked(jira: JiraServer, number: int) -> dict[str, dict[str, Any]] | None:
    items = action_issues(jira, number)
    return items if len(items) == 2 and len(jira.links) == 2 else None


async def _logged(api: httpx.AsyncClient, keys: Keys, number: int, operation: str) -> bool:
    resp = await api.get(f"/api/v1/incidents/INC-{number}/jira", headers=keys.auth(keys.viewer))
    return any(e["operation"] == operation and e["status"] == "ok" for e in resp.json()["log"])


async def test_jira_down_at_completion_catches_up_and_the_incident_never_waits(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, handle, key = await resolved_and_written(api, keys, client, "rca-jira-2")
    jira_server.down()
    await complete(api, keys, number)
    resp = await api.post(f"/api/v1/incidents/INC-{number}/close", json={}, headers=keys.auth(keys.responder))
    assert resp.status_code == 200, resp.text
    assert (await handle.result())["status"] == "closed"  # closed while Jira is unreachable
    assert jira_server.attachments(key) == [] and action_issues(jira_server, number) == {}

    jira_server.up()
    await eventually(lambda: len(jira_server.attachments(key)) == 1, timeout=40)
    await eventually(lambda: _two_linked(jira_server, number), timeout=40)
    sync = client.get_workflow_handle(jira_sync_workflow_id(number))
    assert await sync.result() == key  # every change applied, then the sync ended
    await save_history(handle, "postmortem_jira")
    await save_history(sync, "jira_sync_postmortem")


async def test_a_postmortem_without_action_items_attaches_only_the_pdf(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, handle, key = await resolved_and_written(api, keys, client, "rca-jira-3")
    # Only a table row without an action: nothing to create (the section still counts as written).
    resp = await api.patch(f"/api/v1/incidents/INC-{number}/postmortem", headers=keys.auth(keys.responder),
                           json={"sections": {"action_items": "None: the alerting worked.\n\n| Action | Owner |\n|---|---|\n| | bob |"}})
    assert resp.status_code == 200, resp.text
    await complete(api, keys, number)
    await eventually(lambda: len(jira_server.attachments(key)) == 1, timeout=30)
    await eventually(lambda: _skipped(api, keys, number), timeout=30)
    assert action_issues(jira_server, number) == {} and jira_server.links == []


async def _skipped(api: httpx.AsyncClient, keys: Keys, number: int) -> bool:
    resp = await api.get(f"/api/v1/incidents/INC-{number}/jira", headers=keys.auth(keys.viewer))
    return any(e["operation"] == "action_items" and e["status"] == "skipped" for e in resp.json()["log"])
