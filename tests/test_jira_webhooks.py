"""Jira → Vigil: signed webhooks from tests/jira_server.py, built from changes a person makes in Jira.
Status changes acknowledge, resolve and reopen; comments become notes; assignees reach the incident; Vigil's
own changes coming back are ignored; redelivered and out-of-order events change nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from tests.conftest import Keys
from tests.flows import handle_of, save_history, trigger
from tests.helpers import eventually
from tests.jira_server import JiraServer, post_webhook, webhook_request
from vigil.models import TimelineEvent
from vigil.settings import JiraSettings, Settings
from workflows.incident import IncidentWorkflow

SECRET = b"jira-webhook-secret"
HOOK = "/api/v1/webhooks/jira"


@pytest.fixture(params=["Cloud"])
def jira_server(request: pytest.FixtureRequest) -> Iterator[JiraServer]:
    """Jira Cloud; `@pytest.mark.parametrize("jira_server", ["Server"], indirect=True)` for Data Center."""
    with JiraServer(deployment=request.param) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, jira_server: JiraServer) -> Settings:
    # As docs/jira.md says to configure each: Cloud with email + API token, Data Center with a PAT only.
    auth: dict = (
        {"email": jira_server.user.email, "api_token": SecretStr(jira_server.api_token)} if jira_server.cloud
        else {"pat": SecretStr(jira_server.pat)}
    )
    jira = JiraSettings(
        url=jira_server.base_url, project_key="OPS", webhook_secret=SecretStr(SECRET.decode()), timeout_seconds=5,
        **auth,
    )
    return settings.model_copy(update={"jira": jira})


async def incident_with_issue(api: httpx.AsyncClient, keys: Keys, client: Client, dedup: str) -> tuple[int, str]:
    number = await trigger(api, keys, dedup_key=dedup)
    handle = handle_of(client, number)

    async def key() -> str | None:
        return (await handle.query(IncidentWorkflow.state)).jira_key

    return number, await eventually(key, timeout=15)


async def status(client: Client, number: int) -> str:
    return (await handle_of(client, number).query(IncidentWorkflow.state)).status.value


async def deliver(api: httpx.AsyncClient, payload: dict) -> dict:
    resp = await post_webhook(HOOK, payload, SECRET, client=api)
    assert resp.status_code == 202, resp.text
    return resp.json()


def timeline(sessions: sessionmaker[Session], number: int) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [(e.kind, e.actor, e.message) for e in session.scalars(
            select(TimelineEvent).where(TimelineEvent.incident_number == number).order_by(TimelineEvent.seq))]


async def test_changes_made_in_jira_reach_the_incident_and_are_not_echoed_back(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
    sessions: sessionmaker[Session],
) -> None:
    number, key = await incident_with_issue(api, keys, client, "from-jira")
    human = jira_server.human.user

    started = await deliver(api, jira_server.human_transition(key, "In Progress"))
    assert started["status"] == "applied", started
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.status == "acknowledged" and state.acknowledged_by == f"jira:{human.display_name}"

    noted = await deliver(api, jira_server.human_comment(key, "DB failover in progress"))
    assert noted["status"] == "applied"
    await deliver(api, jira_server.human_assign(key, human.account_id))
    await eventually(lambda: ("note", f"jira:{human.display_name}", "DB failover in progress") in timeline(sessions, number))
    assert (await handle_of(client, number).query(IncidentWorkflow.state)).assignee == human.display_name

    # Jira Cloud sends the transition's comment as its own `comment_created`: resolved with the default
    # resolution, and the comment follows as a note. (Data Center includes it in the update: see below.)
    done = await deliver(api, jira_server.human_transition(key, "Done", comment="failed over to the replica"))
    assert done["status"] == "applied"
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert (state.status, state.resolution) == ("resolved", f"Resolved in Jira {key}")
    assert (await deliver(api, jira_server.webhooks[-1]))["status"] == "applied"

    # Nothing Jira did went back to Jira: the only transitions are the person's own.
    assert [t["by"] for t in jira_server.transitions_applied(key)] == [human.account_id] * 2
    assert [c["body"] for c in jira_server.comments(key)] == ["DB failover in progress", "failed over to the replica"]

    # Reopened in Jira: the incident is triggered again.
    reopened = await deliver(api, jira_server.human_transition(key, "To Do"))
    assert reopened["status"] == "applied" and await status(client, number) == "triggered"
    await save_history(handle_of(client, number), "jira_webhooks")


async def test_a_resolve_with_its_comment_takes_the_comment_as_resolution(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, key = await incident_with_issue(api, keys, client, "dc-comment")
    event = jira_server.human_transition(key, "Done")
    event["comment"] = {"id": "999", "body": "restarted the pool", "author": event["user"]}  # as Data Center sends
    assert (await deliver(api, event))["status"] == "applied"
    assert (await handle_of(client, number).query(IncidentWorkflow.state)).resolution == "restarted the pool"


async def test_signature_is_required(api: httpx.AsyncClient, worker: None, keys: Keys, client: Client,
                                     jira_server: JiraServer) -> None:
    number, key = await incident_with_issue(api, keys, client, "unsigned")
    payload = jira_server.human_transition(key, "In Progress")
    forged = await post_webhook(HOOK, payload, b"not-the-secret", client=api)
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
    unsigned = await post_webhook(HOOK, payload, None, client=api)
    assert unsigned.status_code == 401
    assert await status(client, number) == "triggered"


async def test_vigils_own_changes_coming_back_are_ignored(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, key = await incident_with_issue(api, keys, client, "echo")
    headers = keys.auth(keys.responder)
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers,
                           json={"note": "mine"})).status_code == 200
    await eventually(lambda: len(jira_server.comments(key)) == 1 and len(jira_server.transitions_applied(key)) == 1)
    # Jira tells Vigil about Vigil's own transition and comment: both are recognised and ignored.
    echoes = [w for w in jira_server.webhooks if w["webhookEvent"] in ("jira:issue_updated", "comment_created")
              and w["issue"]["key"] == key]
    assert echoes
    for echo in echoes:
        assert (await deliver(api, echo))["status"] == "ignored", echo["webhookEvent"]

    assert await status(client, number) == "acknowledged"


async def test_redelivered_and_out_of_order_events_change_nothing(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, key = await incident_with_issue(api, keys, client, "order")
    started = jira_server.human_transition(key, "In Progress")
    done = jira_server.human_transition(key, "Done")
    assert (await deliver(api, done))["status"] == "applied"
    assert (await deliver(api, done))["status"] == "duplicate"  # Jira retried the delivery
    late = await deliver(api, started)  # the older event arrives last: the incident is resolved already
    assert late["status"] == "ignored" and "acknowledge" in late["detail"]
    assert await status(client, number) == "resolved"


async def test_a_captured_delivery_resent_under_a_new_identifier_is_a_duplicate(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, key = await incident_with_issue(api, keys, client, "replay")
    done = jira_server.human_transition(key, "Done")
    assert (await deliver(api, done))["status"] == "applied"
    assert (await deliver(api, jira_server.human_transition(key, "To Do")))["status"] == "applied"  # reopened
    body, headers = webhook_request(done, SECRET)
    replay = await api.post(HOOK, content=body, headers=headers | {"X-Atlassian-Webhook-Identifier": "999999"})
    assert replay.status_code == 202 and replay.json()["status"] == "duplicate", replay.text
    assert await status(client, number) == "triggered"  # the captured "Done" did not resolve it again


@pytest.mark.parametrize("jira_server", ["Server"], indirect=True)
async def test_data_center_echoes_are_recognised_by_the_integration_account(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    """With a PAT there is no accountId and no VIGIL_JIRA_EMAIL: /myself's key and name identify Vigil."""
    number, key = await incident_with_issue(api, keys, client, "dc-echo")
    headers = keys.auth(keys.responder)
    assert (await api.post(f"/api/v1/incidents/INC-{number}/acknowledge", headers=headers)).status_code == 200
    assert (await api.post(f"/api/v1/incidents/INC-{number}/assign", headers=headers,
                           json={"assignee": jira_server.user.email})).status_code == 200
    await eventually(lambda: len(jira_server.transitions_applied(key)) == 1
                     and jira_server.issues[key]["fields"]["assignee"] is not None)
    echoes = [w for w in jira_server.webhooks if w["webhookEvent"] == "jira:issue_updated" and w["issue"]["key"] == key]
    assert {i["field"] for w in echoes for i in w["changelog"]["items"]} >= {"status", "assignee"}
    assert all("accountId" not in w["user"] and w["user"]["name"] == "vigil" for w in echoes)
    for echo in echoes:
        result = await deliver(api, echo)
        assert (result["status"], result["detail"]) == ("ignored", "Vigil's own change coming back"), result
    # A person's change on Data Center still applies.
    assert (await deliver(api, jira_server.human_transition(key, "Done")))["status"] == "applied"


async def test_unknown_issues_and_unmapped_statuses_are_accepted_and_logged(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, jira_server: JiraServer,
) -> None:
    number, key = await incident_with_issue(api, keys, client, "unmapped")
    jira_server.workflow["To Do"]["Triage"] = "Triage"
    jira_server.workflow["Triage"] = {"In Progress": "In Progress"}
    unmapped = await deliver(api, jira_server.human_transition(key, "Triage"))
    assert unmapped["status"] == "ignored" and "not mapped" in unmapped["detail"]
    other = jira_server.human_comment(key, "hello")
    other["issue"]["key"] = "OTHER-9"
    assert (await deliver(api, other))["status"] == "ignored"
    log = (await api.get(f"/api/v1/incidents/INC-{number}/jira", headers=keys.auth(keys.viewer))).json()["log"]
    assert any(e["direction"] == "in" and e["status"] == "ignored" for e in log)
    assert await status(client, number) == "triggered"
