"""The Jira settings checked against the project (tests/jira_server.py): the defaults match Jira's simplified
workflow in both directions, the classic workflow needs the mapping docs/jira.md gives, and /readyz says what
is wrong without gating readiness."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from jira import JIRA
from pydantic import SecretStr
from temporalio.client import Client

from vigil.jira_check import check_jira
from vigil.jira_client import make_client
from api.main import create_app
from tests.conftest import free_port
from tests.jira_server import CLASSIC_WORKFLOW, JiraServer
from vigil.settings import JiraSettings, Settings

CLASSIC = {  # docs/jira.md, "Jira's classic workflow"
    "transitions": {"acknowledged": "Start Progress", "resolved": "Resolve Issue", "triggered": "Reopen Issue"},
    "statuses": {"Open": "reopen", "In Progress": "acknowledge", "Resolved": "resolve", "Closed": "resolve",
                 "Reopened": "reopen"},
}


def jira_settings(server: JiraServer, **kw: object) -> JiraSettings:
    auth: dict = ({"email": server.user.email, "api_token": SecretStr(server.api_token)} if server.cloud
                  else {"pat": SecretStr(server.pat)})
    return JiraSettings(**{"url": server.base_url, "project_key": "OPS", "issue_type": "Incident", "timeout_seconds": 5,
                           **auth, **kw})


def vigil_issue(server: JiraServer, settings: JiraSettings, *path: str) -> str:
    client: JIRA = make_client(settings)
    key = client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                                      "summary": "INC-1", "labels": ["vigil", "vigil-INC-1"]}).key
    for status in path:
        server.integration.transition(key, status)
    return key


@pytest.fixture(params=["Cloud", "Server"])
def any_jira(request: pytest.FixtureRequest) -> Iterator[JiraServer]:
    with JiraServer(deployment=request.param) as server:
        yield server


def test_the_defaults_match_the_simplified_workflow(any_jira: JiraServer) -> None:
    settings = jira_settings(any_jira)
    assert check_jira(settings) == []
    for path in ((), ("In Progress",), ("Done",)):  # Vigil's next transitions are offered from each state
        vigil_issue(any_jira, settings, *path)
        assert check_jira(settings) == [], path


def test_mixed_workflow_names_are_reported(jira_server: JiraServer) -> None:
    """The old defaults: classic transition names with simplified statuses; one direction could never work."""
    settings = jira_settings(jira_server, transitions=CLASSIC["transitions"])
    vigil_issue(jira_server, settings)
    problems = check_jira(settings)
    assert len(problems) == 2 and all("not offered on OPS-1 in status 'To Do'" in p for p in problems), problems
    assert "'Start Progress'" in problems[0] and "'Resolve Issue'" in problems[1]


def test_the_classic_workflow_needs_the_documented_mapping(jira_server: JiraServer) -> None:
    jira_server.workflow = {k: dict(v) for k, v in CLASSIC_WORKFLOW.items()}
    defaults = jira_settings(jira_server)
    problems = check_jira(defaults)
    assert problems == [p for p in problems if "VIGIL_JIRA_STATUSES names" in p] and len(problems) == 2, problems
    classic = jira_settings(jira_server, **CLASSIC)
    for path in ((), ("In Progress",), ("Resolved",), ("Resolved", "Reopened"), ("Closed",)):
        vigil_issue(jira_server, classic, *path)
        assert check_jira(classic) == [], path
    other = jira_settings(jira_server, **CLASSIC, issue_type="Epic")
    assert check_jira(other) == ["issue type 'Epic' is not in project OPS (it has Bug, Incident, Task)"]


def test_wrong_credentials_and_an_unreachable_jira_are_reported(jira_server: JiraServer) -> None:
    bad = jira_settings(jira_server).model_copy(update={"api_token": SecretStr("wrong")})
    assert check_jira(bad)[0].startswith("Jira answered HTTP 401")
    gone = jira_settings(jira_server).model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})
    assert check_jira(gone) == ["Jira unreachable: ConnectionError"]


async def test_readyz_reports_the_check_without_gating_readiness(
    settings: Settings, client: Client, jira_server: JiraServer,
) -> None:
    for jira, expected in (
        (jira_settings(jira_server), "ok"),
        (jira_settings(jira_server, statuses={"Closed": "resolve"}), "error: VIGIL_JIRA_STATUSES names 'Closed'"),
    ):
        app = create_app(settings.model_copy(update={"jira": jira}), client)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["jira"].startswith(expected), ready.json()
