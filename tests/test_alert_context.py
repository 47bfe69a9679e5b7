"""The alert's context reaches the responder: Alertmanager's runbook_url, description and generatorURL, and
PagerDuty's custom_details, links and images show in the incident JSON (per alert), the email (runbook first,
clickable), the SMS when it fits, the Temporal UI's details and the Jira issue; long values are bounded."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import TimeSkipper

from tests.conftest import Inbox, Keys
from tests.flows import attempts, fixture, handle_of, post_alertmanager
from tests.helpers import eventually, pd_event
from tests.jira_server import JiraServer
from tests.provider_server import ProviderServer
from vigil.ingest.fit import MAX_LINKS, MAX_URL
from vigil.settings import Settings

AM = fixture("alertmanager-0.25-webhook-runbook.json")
AM_ALERT = AM["alerts"][0]
RUNBOOK = AM_ALERT["annotations"]["runbook_url"]
PD_RUNBOOK = "https://wiki.example.com/runbooks/payments-5xx"
PD_DASHBOARD = "https://grafana.example.com/d/payments"
PD_GRAPH = "https://grafana.example.com/render/payments.png"
PD_CLIENT_URL = "https://monitoring.example.com/alerts/42"


@pytest.fixture
def settings(settings: Settings, provider: ProviderServer, request: pytest.FixtureRequest) -> Settings:
    """SMS to the test middleware; Jira sync to the test Jira for a test that takes `jira_server` (time skipping
    is for tests without it: it waits on the Jira child's activities too)."""
    update: dict = {"providers": provider.provider_settings()}
    if "jira_server" in request.fixturenames:
        update["jira"] = request.getfixturevalue("jira_server").cloud_settings()
    return settings.model_copy(update=update)


def pd_trigger(routing_key: str, dedup_key: str, **extra: object) -> dict:
    """A PagerDuty Events v2 trigger with nested custom_details, links (one a runbook) and an image."""
    body = pd_event(routing_key, dedup_key, component="payments", klass="Payments5xx", summary="payments 5xx above 5%")
    body["payload"]["custom_details"] = {"ratio": 0.072, "pods": ["api-1", "api-2"], "region": "eu-west-1"}
    body["client_url"] = PD_CLIENT_URL
    body["links"] = [{"href": PD_DASHBOARD, "text": "Dashboard"}, {"href": PD_RUNBOOK, "text": "Runbook"}]
    body["images"] = [{"src": PD_GRAPH, "href": PD_DASHBOARD, "alt": "5xx ratio, last hour"}]
    return {**body, **extra}


async def incident(api: httpx.AsyncClient, keys: Keys, number: int) -> dict:
    resp = await api.get(f"/api/v1/incidents/INC-{number}", headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


def text_of(inbox: Inbox, number: int, kind: str = "plain") -> str:
    [mail] = inbox.for_incident(number)
    return mail.get_body(preferencelist=(kind,)).get_content()


async def test_alertmanager_runbook_description_and_generator_url_reach_json_email_ui_and_jira(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, jira_server: JiraServer,
) -> None:
    [ref] = (await post_alertmanager(api, keys.integration, AM))["incidents"]
    number = int(ref.removeprefix("INC-"))
    await eventually(lambda: len(inbox.for_incident(number)) == 1)

    [alert] = (await incident(api, keys, number))["alerts"]
    assert alert["runbook_url"] == RUNBOOK
    assert alert["description"] == AM_ALERT["annotations"]["description"]
    assert alert["source_url"] == AM_ALERT["generatorURL"]
    assert alert["details"] == {"dashboard": AM_ALERT["annotations"]["dashboard"]}

    text = text_of(inbox, number)
    under_alert = text.split("Alerts:", 1)[1].splitlines()
    assert under_alert[2].strip() == f"Runbook: {RUNBOOK}", text  # the runbook first, right under the alert
    assert f"Source: {AM_ALERT['generatorURL']}" in text and AM_ALERT["annotations"]["description"] in text
    html = text_of(inbox, number, "html")
    assert html.index(f'<a href="{RUNBOOK}">Runbook</a>') < html.index("dashboard</a>") < html.index(">Source</a>")

    details = await (await handle_of(client, number).describe()).static_details() or ""
    assert f"- [Runbook]({RUNBOOK})" in details and "5xx ratio 7.2% over the last 5m" in details

    await eventually(lambda: len(jira_server.issues) == 1)
    [issue] = jira_server.issues.values()
    description = issue["fields"]["description"]
    assert f"** [Runbook|{RUNBOOK}]" in description and f"[Source|{AM_ALERT['generatorURL']}]" in description


async def test_pagerduty_custom_details_links_and_images_reach_json_email_and_the_sms(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    resp = await api.post("/v2/enqueue", json=pd_trigger(keys.integration, "pd-context"))
    assert resp.status_code == 202, resp.text
    number = int(resp.json()["message"].rsplit("INC-", 1)[1])
    await eventually(lambda: len(inbox.for_incident(number)) == 1)

    [alert] = (await incident(api, keys, number))["alerts"]
    assert alert["runbook_url"] == PD_RUNBOOK  # the link named runbook
    assert alert["links"] == [{"href": PD_DASHBOARD, "text": "Dashboard"}]
    assert alert["images"] == [{"src": PD_GRAPH, "href": PD_DASHBOARD, "alt": "5xx ratio, last hour"}]
    assert alert["source_url"] == PD_CLIENT_URL
    assert alert["details"] == {"ratio": "0.072", "pods": '["api-1", "api-2"]', "region": "eu-west-1"}

    text = text_of(inbox, number)
    lines = [line.strip() for line in text.split("Alerts:", 1)[1].splitlines()[2:5]]
    assert lines == [f"Runbook: {PD_RUNBOOK}", f"Dashboard: {PD_DASHBOARD}", f"Source: {PD_CLIENT_URL}"], text
    assert 'pods: ["api-1", "api-2"]' in text
    assert f'<a href="{PD_DASHBOARD}">5xx ratio, last hour</a>' in text_of(inbox, number, "html")

    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await skipper.fast_forward(handle_of(client, number), timedelta(minutes=5, seconds=1))
    [sms] = await eventually(lambda: [s for s in provider.sent if s.channel == "sms"])
    assert sms.text.endswith(f"Runbook: {PD_RUNBOOK}") and len(sms.text) <= 306, sms.text


async def test_a_long_title_leaves_the_runbook_out_of_the_sms_and_hostile_links_stay_text(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, skipper: TimeSkipper,
    provider: ProviderServer, sessions: sessionmaker[Session],
) -> None:
    body = pd_trigger(keys.integration, "pd-long")
    body["payload"]["summary"] = "payments " + "x" * 900
    body["links"] = [{"href": "javascript:alert(1)", "text": "click"}, {"href": PD_RUNBOOK, "text": "Runbook"}]
    body["payload"]["custom_details"] = {"note": "<script>alert(1)</script>"}
    resp = await api.post("/v2/enqueue", json=body)
    assert resp.status_code == 202, resp.text
    number = int(resp.json()["message"].rsplit("INC-", 1)[1])
    await eventually(lambda: len(inbox.for_incident(number)) == 1)

    html = text_of(inbox, number, "html")
    assert "javascript:" not in html and "<script>" not in html and "&lt;script&gt;" in html
    await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])
    await skipper.fast_forward(handle_of(client, number), timedelta(minutes=5, seconds=1))
    [sms] = await eventually(lambda: [s for s in provider.sent if s.channel == "sms"])
    assert "Runbook" not in sms.text and len(sms.text) <= 306 and sms.text.endswith("to acknowledge.")


async def test_links_and_images_are_bounded_at_the_door(api: httpx.AsyncClient, worker: None, keys: Keys) -> None:
    body = pd_trigger(keys.integration, "pd-many")
    long_href = "https://example.com/" + "a" * 5000
    body["links"] = [{"href": long_href, "text": "t" * 1000}] + [
        {"href": f"https://example.com/{i}", "text": str(i)} for i in range(MAX_LINKS + 5)
    ] + [{"text": "no href"}, "not an object"]
    resp = await api.post("/v2/enqueue", json=body)
    assert resp.status_code == 202, resp.text
    number = int(resp.json()["message"].rsplit("INC-", 1)[1])

    [alert] = (await incident(api, keys, number))["alerts"]
    links = alert["links"] + alert["images"] + ([{"href": alert["runbook_url"]}] if alert["runbook_url"] else [])
    assert len(links) == MAX_LINKS
    first = alert["links"][0]
    assert len(first["href"]) == MAX_URL and first["href"][-13:-12] == "#" and len(first["text"]) == 256
    assert "link(s) and image(s) past the first 20 dropped" in alert["details"]["vigil_truncated"]
    assert json.loads(alert["details"]["pods"]) == ["api-1", "api-2"]
