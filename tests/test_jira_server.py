"""The real `jira` client against tests/jira_server: Vigil's calls, the errors it must handle, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import jira.resilientsession
import pytest
import requests
from jira import JIRA, JIRAError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.jira_server import JiraServer, parse_jql, post_webhook, sign

LABEL = "vigil-INC-42"


def connect(jira: JiraServer, **options: Any) -> JIRA:
    """The client as Vigil builds it: no client-side retries, bounded timeouts."""
    settings = {"max_retries": 0, "timeout": 5} | options
    return JIRA(server=jira.base_url, basic_auth=jira.basic_auth, **settings)


@pytest.fixture
def client(jira_server: JiraServer) -> Iterator[JIRA]:
    jira = connect(jira_server)
    yield jira
    jira.close()


def create(client: JIRA, **fields: Any) -> Any:
    base = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "labels": [LABEL],
            "summary": "INC-42: checkout errors", "description": "High error rate",
            "priority": {"name": "High"}}
    return client.create_issue(fields=base | fields)


def error(call: Any) -> JIRAError:
    with pytest.raises(JIRAError) as caught:
        call()
    return caught.value


# --- the happy path -------------------------------------------------------------------------


def test_construction_reads_server_info_then_myself(jira_server: JiraServer, client: JIRA) -> None:
    first = jira_server.requests[0]
    assert (first.method, first.path) == ("GET", "/rest/api/2/serverInfo")
    assert first.headers["authorization"].startswith("Basic ")
    assert client.deploymentType == "Cloud" and client.server_info()["versionNumbers"] == [1001, 0, 0]
    me = client.myself()
    assert (me["accountId"], me["emailAddress"], me["displayName"]) == (
        jira_server.user.account_id, "vigil@example.com", "Vigil Integration")


def test_create_get_and_search_by_label(jira_server: JiraServer, client: JIRA) -> None:
    created = create(client, assignee={"accountId": jira_server.human.user.account_id})
    create(client, labels=["other"], summary="unrelated")
    issue = client.issue(created.key)
    assert created.key == "OPS-1" and issue.id == created.id and jira_server.created_count == 2
    assert (issue.fields.summary, issue.fields.description) == ("INC-42: checkout errors", "High error rate")
    assert (issue.fields.status.name, issue.fields.status.statusCategory.key) == ("To Do", "new")
    assert (issue.fields.priority.name, issue.fields.labels, issue.fields.issuetype.name) == (
        "High", [LABEL], "Incident")
    assert issue.fields.assignee.accountId == jira_server.human.user.account_id
    assert issue.fields.project.key == "OPS" and issue.fields.comment.total == 0
    for jql in (f'labels = "{LABEL}"', f"labels = {LABEL}", f'labels = "{LABEL}" AND project = OPS'):
        assert [i.key for i in client.search_issues(jql)] == ["OPS-1"], jql
    assert client.search_issues('labels = "vigil-INC-43"') == []
    assert jira_server.requests[-1].path == "/rest/api/2/search/jql"  # Cloud: enhanced search
    assert jira_server.issues["OPS-1"]["fields"]["labels"] == [LABEL]


def test_server_deployment_takes_a_pat_and_searches_the_old_way() -> None:
    with JiraServer(deployment="Server") as jira:
        client = JIRA(server=jira.base_url, token_auth=jira.pat, max_retries=0, timeout=5)
        assert client.deploymentType == "Server" and client.myself()["name"] == "vigil"
        key = create(client).key
        result = client.search_issues(f'labels = "{LABEL}"')
        assert [i.key for i in result] == [key] and result.total == 1
        assert jira.requests[-1].path == "/rest/api/2/search"
        client.assign_issue(key, "hannah")  # Server identifies users by username
        assert client.issue(key).fields.assignee.name == "hannah"
        client.close()
    with JiraServer() as cloud:
        bearer = error(lambda: JIRA(server=cloud.base_url, token_auth=cloud.pat, max_retries=0))
        assert bearer.status_code == 401  # Jira Cloud takes API tokens as Basic auth only


def test_comments_and_transitions_by_id_and_by_name(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    comment = client.add_comment(key, "Vigil: acknowledged by Rita")
    assert comment.body == "Vigil: acknowledged by Rita"
    assert comment.author.accountId == jira_server.user.account_id
    assert [c.body for c in client.comments(key)] == ["Vigil: acknowledged by Rita"]
    # The simplified workflow: every other status, each transition named after its target.
    assert {t["name"]: t["to"]["name"] for t in client.transitions(key)} == {
        "In Progress": "In Progress", "Done": "Done"}
    start = client.find_transitionid_by_name(key, "In Progress")
    done = client.find_transitionid_by_name(key, "Done")
    client.transition_issue(key, start)
    client.transition_issue(key, "Done", comment="Resolved in Vigil")
    issue = client.issue(key)
    assert (issue.fields.status.name, issue.fields.resolution.name) == ("Done", "Done")
    assert [c["body"] for c in jira_server.comments(key)][-1] == "Resolved in Vigil"
    assert [(t["name"], t["from"], t["to"]) for t in jira_server.transitions_applied(key)] == [
        ("In Progress", "To Do", "In Progress"), ("Done", "In Progress", "Done")]
    bad = error(lambda: client.transition_issue(key, done))  # not available from Done itself
    assert bad.status_code == 400 and "is not valid for this issue" in bad.text
    assert "Invalid transition name" in error(lambda: client.transition_issue(key, "Teleport")).text


def test_workflow_is_a_dict_the_test_sets(jira_server: JiraServer, client: JIRA) -> None:
    jira_server.workflow = {"Open": {"Acknowledge": "Acknowledged"}, "Acknowledged": {"Close": "Closed"},
                            "Closed": {}}
    jira_server.status_categories["Closed"] = "done"
    key = create(client).key
    assert client.issue(key).fields.status.name == "Open"
    client.transition_issue(key, "Acknowledge")
    client.transition_issue(key, "Close")
    assert client.issue(key).fields.status.statusCategory.key == "done" and client.transitions(key) == []


def test_assign_by_email_or_by_account_id(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    bob = jira_server.as_user("5c0000000000000000000b0b", "bob@example.com", "Bob Builder").user
    client.assign_issue(key, "bob@example.com")  # the client looks the user up first (query= on Cloud)
    assert client.issue(key).fields.assignee.accountId == bob.account_id
    by_id = error(lambda: client.assign_issue(key, jira_server.human.user.account_id))
    assert "No matching user" in by_id.text  # Cloud's user search does not match account ids
    client.issue(key).update(fields={"assignee": {"accountId": jira_server.human.user.account_id}})
    assert client.issue(key).fields.assignee.displayName == "Hannah Human"
    client.assign_issue(key, None)
    assert client.issue(key).fields.assignee is None


def test_edit_labels_and_summary(jira_server: JiraServer, client: JIRA) -> None:
    issue = create(client)
    issue.update(update={"labels": [{"add": "vigil-acked"}]}, summary="INC-42: checkout errors (acked)")
    assert issue.fields.labels == [LABEL, "vigil-acked"]
    assert issue.fields.summary == "INC-42: checkout errors (acked)"
    echo = jira_server.webhooks[-1]
    assert echo["user"]["accountId"] == jira_server.user.account_id  # Vigil's own change, echoed
    assert {i["field"]: i["toString"] for i in echo["changelog"]["items"]} == {
        "labels": f"{LABEL} vigil-acked", "summary": "INC-42: checkout errors (acked)"}
    bad = error(lambda: issue.update(fields={"status": {"name": "Done"}}))
    assert bad.status_code == 400 and "cannot be set" in bad.text


def test_issue_property_round_trip_and_search(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    assert client.add_issue_property(key, "vigil", {"incident": 42, "run": "r-1"}).status_code == 201
    assert client.add_issue_property(key, "vigil", {"incident": 42}).status_code == 200
    assert client.issue_property(key, "vigil").raw == {"key": "vigil", "value": {"incident": 42}}
    assert error(lambda: client.issue_property(key, "missing")).status_code == 404
    assert client.search_issues("issue.property[vigil].incident = 42") == []  # not indexed without an app
    jira_server.index_property("vigil", "incident")
    assert [i.key for i in client.search_issues("issue.property[vigil].incident = 42")] == [key]
    assert client.search_issues('issue.property[vigil].incident = "43" AND project = OPS') == []


# --- errors as the client surfaces them ----------------------------------------------------


@pytest.mark.parametrize(("fields", "field", "text"), [
    ({"project": {"key": "NOPE"}}, "project", "valid project"),
    ({"issuetype": {"name": "Epic"}}, "issuetype", "issue type"),
    ({"priority": {"name": "Urgent"}}, "priority", "priority selected is invalid"),
    ({"labels": ["two words"]}, "labels", "contains spaces"),
    ({"customfield_10010": "x"}, "customfield_10010", "cannot be set"),
])
def test_create_validation_errors(client: JIRA, fields: dict, field: str, text: str) -> None:
    err = error(lambda: create(client, **fields))
    assert err.status_code == 400 and text in err.text
    assert field in err.response.json()["errors"] and err.response.json()["errorMessages"] == []


def test_a_field_the_test_rejects_and_unknown_things(jira_server: JiraServer, client: JIRA) -> None:
    jira_server.reject_field("description", "Description is too long.")
    err = error(lambda: create(client))
    assert err.status_code == 400
    assert err.response.json()["errors"] == {"description": "Description is too long."}
    missing = error(lambda: client.issue("OPS-999"))
    assert missing.status_code == 404 and missing.response.json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}
    assert error(lambda: client.search_issues("labels ~ vigil")).status_code == 400
    assert error(lambda: client.search_issues("fixVersion = 1.0")).status_code == 400
    unknown = error(lambda: client.search_issues("project = NOPE"))
    assert "does not exist for the field 'project'" in unknown.text
    assert jira_server.created_count == 0


def test_wrong_or_missing_credentials(jira_server: JiraServer) -> None:
    wrong = ("vigil@example.com", "wrong")
    err = error(lambda: JIRA(server=jira_server.base_url, basic_auth=wrong, max_retries=0))
    assert err.status_code == 401 and "not authenticated" in err.text
    anonymous = JIRA(server=jira_server.base_url, max_retries=0)  # serverInfo answers anonymously
    assert error(anonymous.myself).status_code == 401
    anonymous.close()


@pytest.mark.parametrize("status", [500, 429, 400, 403])
def test_scripted_failures_surface_at_once_without_client_retries(
    jira_server: JiraServer, client: JIRA, status: int,
) -> None:
    jira_server.fail_next(1, status, retry_after=7 if status == 429 else None)
    before = len(jira_server.requests)
    err = error(lambda: create(client))
    assert err.status_code == status and len(jira_server.requests) == before + 1
    assert jira_server.created_count == 0
    if status == 429:
        assert err.response.headers["Retry-After"] == "7"
    assert create(client).key == "OPS-1"


def test_failures_can_target_a_path_and_method(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    jira_server.fail_next(1, 500, method="POST", path_prefix=f"/rest/api/2/issue/{key}/comment")
    assert client.issue(key).key == key and client.comments(key) == []
    assert error(lambda: client.add_comment(key, "x")).status_code == 500
    assert client.add_comment(key, "x").body == "x"


def test_default_client_retries_429_and_connection_errors_but_not_500(
    jira_server: JiraServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(jira.resilientsession, "time", SimpleNamespace(sleep=delays.append))
    client = JIRA(server=jira_server.base_url, basic_auth=jira_server.basic_auth)  # defaults: max_retries=3
    jira_server.fail_next(2, 429, retry_after=1)
    assert create(client).key == "OPS-1" and len(delays) == 2 and all(1 <= d <= 2 for d in delays)
    jira_server.fail_next(1, 500)
    assert error(lambda: create(client)).status_code == 500 and len(delays) == 2
    jira_server.crash_after_create()
    assert create(client).key == "OPS-3"  # the lost answer made the client POST again: a duplicate issue
    assert [i.key for i in client.search_issues(f'labels = "{LABEL}"')] == ["OPS-1", "OPS-2", "OPS-3"]
    assert len(delays) == 3 and 10 <= delays[-1] <= 20
    jira_server.down()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.myself()
    assert len(delays) == 6 and delays[-1] <= 60  # capped by _session.max_retry_delay
    client.close()


# --- outages ---------------------------------------------------------------------------------


def test_down_refuses_connections_and_up_restores_state(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    jira_server.down()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.issue(key)
    assert time.monotonic() - started < 1  # refused, not timed out
    jira_server.up()
    assert client.issue(key).fields.labels == [LABEL]


def test_crash_after_create_stores_the_issue_and_drops_the_answer(
    jira_server: JiraServer, client: JIRA,
) -> None:
    jira_server.crash_after_create()
    with pytest.raises(requests.exceptions.ConnectionError):
        create(client)
    assert jira_server.created_count == 1 and jira_server.requests[-1].status == 0
    assert [i.key for i in client.search_issues(f'labels = "{LABEL}"')] == ["OPS-1"]
    assert create(client).key == "OPS-2"  # only the next create was dropped


def test_latency_makes_the_change_then_answers_late(jira_server: JiraServer) -> None:
    client = connect(jira_server, timeout=(1, 0.1))
    jira_server.latency = 0.3
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(client)
    assert jira_server.created_count == 1
    client.close()


def test_search_index_lag(jira_server: JiraServer, client: JIRA) -> None:
    jira_server.index_delay = 60
    key = create(client).key
    assert client.search_issues(f'labels = "{LABEL}"') == [] and client.issue(key).key == key
    jira_server.index_delay = 0
    assert [i.key for i in client.search_issues(f'labels = "{LABEL}"')] == [key]


def test_concurrent_creates_get_distinct_keys(jira_server: JiraServer) -> None:
    def one(i: int) -> str:
        client = connect(jira_server)
        try:
            return create(client, summary=f"concurrent {i}").key
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(one, range(16)))
    assert sorted(keys) == sorted(f"OPS-{n}" for n in range(1, 17))


# --- people in Jira, and the webhooks they cause ------------------------------------------


def test_human_changes_return_jira_webhook_bodies(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    moved = jira_server.human_transition(key, "Done", comment="Fixed the config")
    assert (moved["webhookEvent"], moved["issue_event_type_name"]) == ("jira:issue_updated", "issue_generic")
    assert moved["user"]["accountId"] == jira_server.human.user.account_id and moved["timestamp"] > 0
    status = next(i for i in moved["changelog"]["items"] if i["field"] == "status")
    assert (status["fromString"], status["toString"]) == ("To Do", "Done")
    assert moved["issue"]["key"] == key and moved["issue"]["fields"]["status"]["name"] == "Done"
    assert jira_server.webhooks[-1]["webhookEvent"] == "comment_created"
    assert client.issue(key).fields.status.name == "Done"

    said = jira_server.human_comment(key, "Still seeing errors")
    assert said["webhookEvent"] == "comment_created" and said["issue"]["key"] == key
    assert (said["comment"]["body"], said["comment"]["author"]["displayName"]) == (
        "Still seeing errors", "Hannah Human")

    bob = jira_server.as_user("5c0000000000000000000b0b", "bob@example.com", "Bob Builder")
    given = jira_server.human_assign(key, bob.user.account_id, user=bob)
    item = given["changelog"]["items"][0]
    assert (item["field"], item["from"], item["to"], item["toString"]) == (
        "assignee", None, bob.user.account_id, "Bob Builder")
    assert bob.transition(key, "To Do")["user"]["displayName"] == "Bob Builder"
    with pytest.raises(ValueError, match="no transition"):
        jira_server.human_transition(key, "Closed")


def test_api_changes_are_recorded_as_echo_webhooks(jira_server: JiraServer, client: JIRA) -> None:
    key = create(client).key
    client.transition_issue(key, "In Progress")
    echo = jira_server.webhooks[-1]
    assert echo["user"]["accountId"] == jira_server.user.account_id and echo["issue"]["key"] == key
    assert jira_server.integration.comment(key, "built directly")["comment"]["author"]["accountId"] == (
        jira_server.user.account_id)
    assert [w["webhookEvent"] for w in jira_server.webhooks][:1] == ["jira:issue_created"]


def test_sign_is_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(b"s3cret", b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign(b"s3cret", b'{"a":1}') == f"sha256={expected}"


async def test_post_webhook_signs_the_bytes_it_sends(jira_server: JiraServer, client: JIRA) -> None:
    seen: list[tuple[dict[str, str], Any]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature", "")):
            return Response(status_code=401)
        seen.append((dict(request.headers), json.loads(body)))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/jira", hook, methods=["POST"])])
    payload = jira_server.human_comment(create(client).key, "hello")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as api:
        assert (await post_webhook("/jira", payload, b"hook-secret", client=api)).status_code == 204
        assert (await post_webhook("/jira", payload, b"wrong", client=api)).status_code == 401
        assert (await post_webhook("/jira", payload, None, client=api)).status_code == 401
        again = await post_webhook("/jira", payload, b"hook-secret", client=api)
    assert again.status_code == 204 and seen[0][1] == payload
    assert seen[0][0]["x-atlassian-webhook-identifier"] == seen[1][0]["x-atlassian-webhook-identifier"]
    # Without a client it goes over TCP; jira_server itself records what arrived (and refuses it: no auth).
    response = await post_webhook(f"{jira_server.base_url}/hooks/vigil", payload, b"hook-secret")
    arrived = jira_server.requests[-1]
    assert response.status_code == 401 and arrived.json == payload
    sent = json.dumps(payload, separators=(",", ":")).encode()
    assert arrived.headers["x-hub-signature"] == sign(b"hook-secret", sent)


def test_parse_jql() -> None:
    assert parse_jql('labels = "vigil-INC-42" AND project = OPS ORDER BY created DESC') == (
        [("labels", "=", "vigil-INC-42"), ("project", "=", "OPS")], True)
    assert parse_jql("issue.property[vigil].incident = 42")[0] == [("property:vigil:incident", "=", "42")]
