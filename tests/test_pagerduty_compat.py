"""PagerDuty Events v2 compatibility, driven by PagerDuty's own clients (pdpyras 5.4.1 and pagerduty 7.2.0) over
real HTTPS; change events on the incident (timeline and recent changes); PagerDuty's 400 body; ingest metrics."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pagerduty
import pdpyras
import pytest
import trustme
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from tests.conftest import Keys, free_port
from tests.flows import admin, trigger
from tests.helpers import eventually, pd_event
from vigil.models import Incident, Integration
from vigil.settings import Settings

INVALID = {"status": "invalid event", "message": "Event object is invalid"}


@dataclass(frozen=True)
class TlsApi:
    url: str
    ca_file: Path
    context: ssl.SSLContext  # trusts the test CA only


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_api(settings: Settings, client: Client, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[TlsApi]:
    """The app behind real uvicorn TLS on a free port, with a certificate for 127.0.0.1 from a test CA."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings, client), host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ssl_certfile=str(certfile), ssl_keyfile=str(keyfile),
    ))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    yield TlsApi(f"https://127.0.0.1:{port}", ca_file, context)
    server.should_exit = True
    await task


def trusting(session: pdpyras.PDSession, api: TlsApi) -> pdpyras.PDSession:
    """pdpyras is a requests Session: it must trust the test CA. requests lets REQUESTS_CA_BUNDLE (set on many
    machines) override a session's `verify`, unless the session ignores the environment (docs/tls.md)."""
    session.url, session.verify, session.trust_env = api.url, str(api.ca_file), False
    return session


def pdpyras_events(api: TlsApi, key: str) -> pdpyras.EventsAPISession:
    return trusting(pdpyras.EventsAPISession(key), api)


def pdpyras_changes(api: TlsApi, key: str) -> pdpyras.ChangeEventsAPISession:
    return trusting(pdpyras.ChangeEventsAPISession(key), api)


def pagerduty_client(api: TlsApi, key: str) -> pagerduty.EventsApiV2Client:
    return pagerduty.EventsApiV2Client(key, base_url=api.url, verify=api.context)


async def incident(api: httpx.AsyncClient, keys: Keys, number: int) -> dict:
    resp = await api.get(f"/api/v1/incidents/{number}", headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def status_becomes(api: httpx.AsyncClient, keys: Keys, number: int, status: str) -> None:
    async def check() -> bool:
        return (await incident(api, keys, number))["status"] == status

    await eventually(check)


def number_of(api_message: str) -> int:
    return int(api_message.rsplit("INC-", 1)[1].split()[0])


# --- PagerDuty's clients over HTTPS --------------------------------------------------------------------------


async def test_pdpyras_triggers_acknowledges_and_resolves_over_https(
    tls_api: TlsApi, api: httpx.AsyncClient, worker: None, keys: Keys,
) -> None:
    events = pdpyras_events(tls_api, keys.integration)
    dedup = await asyncio.to_thread(
        events.trigger, "Checkout 5xx over 2%", "web-1", dedup_key="pdpyras-1", severity="critical",
        payload={"component": "checkout", "class": "HighErrorRate"}, custom_details={"error_rate": "2.4%"},
    )
    assert dedup == "pdpyras-1"
    [row] = (await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))).json()["items"]
    assert row["service"] == "checkout"
    assert await asyncio.to_thread(events.acknowledge, "pdpyras-1") == "pdpyras-1"
    await status_becomes(api, keys, row["number"], "acknowledged")
    assert await asyncio.to_thread(events.resolve, "pdpyras-1") == "pdpyras-1"
    await status_becomes(api, keys, row["number"], "resolved")


async def test_pagerduty_client_works_over_https_and_refuses_http(
    tls_api: TlsApi, api: httpx.AsyncClient, worker: None, keys: Keys,
) -> None:
    with pytest.raises(pagerduty.UrlError):  # why Vigil needs TLS in front of it for this client (docs/tls.md)
        pagerduty.EventsApiV2Client(keys.integration, base_url=tls_api.url.replace("https", "http"))
    events = pagerduty_client(tls_api, keys.integration)
    dedup = await asyncio.to_thread(
        events.trigger, "Search latency p99 over 2s", "search-1", dedup_key="pd7-1", severity="error",
        payload={"component": "search"},
    )
    assert dedup == "pd7-1"
    [row] = (await api.get("/api/v1/incidents", headers=keys.auth(keys.viewer))).json()["items"]
    assert (row["service"], row["severity"]) == ("search", "high")
    await asyncio.to_thread(events.acknowledge, "pd7-1")
    await status_becomes(api, keys, row["number"], "acknowledged")
    await asyncio.to_thread(events.resolve, "pd7-1")
    await status_becomes(api, keys, row["number"], "resolved")


async def test_an_invalid_event_surfaces_pagerdutys_message_in_both_clients(tls_api: TlsApi, keys: Keys) -> None:
    with pytest.raises(pdpyras.PDHTTPError) as old:
        await asyncio.to_thread(pdpyras_events(tls_api, keys.integration).trigger, "s", "src", severity="fatal")
    assert old.value.response.status_code == 400
    assert old.value.response.json() == {**INVALID, "errors": [
        "payload.severity: Input should be 'critical', 'error', 'warning' or 'info'"]}
    assert "Event object is invalid" in str(old.value)
    with pytest.raises(pagerduty.HttpError) as new:
        await asyncio.to_thread(pagerduty_client(tls_api, keys.integration).send_event, "resolve", dedup_key="")
    assert new.value.response.status_code == 400
    assert "Event object is invalid" in str(new.value) and "dedup_key" in str(new.value)
    with pytest.raises(pdpyras.PDHTTPError) as change:
        await asyncio.to_thread(pdpyras_changes(tls_api, keys.integration).submit, "", timestamp="2026-01-01T00:00:00Z")
    assert change.value.response.json()["errors"] == ["payload.summary: String should have at least 1 character"]


async def test_an_unknown_routing_key_is_pagerdutys_400(tls_api: TlsApi, keys: Keys) -> None:
    for key in ("not-a-vigil-key", keys.admin):  # an API key is not an integration key
        with pytest.raises(pdpyras.PDHTTPError) as err:
            await asyncio.to_thread(pdpyras_events(tls_api, key).trigger, "s", "src")
        assert err.value.response.status_code == 400
        assert err.value.response.json() == {**INVALID, "errors": ["Invalid routing key"]}
        with pytest.raises(pagerduty.HttpError) as err:
            await asyncio.to_thread(pagerduty_client(tls_api, key).submit, "deploy", timestamp="2026-01-01T00:00:00Z")
        assert "Invalid routing key" in str(err.value)


# --- change events -----------------------------------------------------------------------------------------


async def test_change_events_from_both_clients_are_stored_with_the_routed_service(
    tls_api: TlsApi, api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        integration_id = session.scalar(select(Integration.id).where(Integration.name == "test-integration"))
    # A deploy tool names itself as source: a route sends its changes to the service they change, as for alerts.
    await admin(api, keys, f"integrations/{integration_id}/rules",
                {"routes": [{"matchers": [{"name": "source", "op": "=~", "value": "deploy-.*"}], "service": "checkout"}]},
                method="PUT")
    change_id = await asyncio.to_thread(
        pdpyras_changes(tls_api, keys.integration).submit, "Deploy checkout v42", source="deploy-bot",
        custom_details={"version": "v42", "by": "ci"}, links=[{"href": "https://ci.example/42", "text": "build 42"}],
        timestamp="2026-03-01T10:00:00Z",
    )
    await asyncio.to_thread(
        pagerduty_client(tls_api, keys.integration).send_change_event,
        payload={"summary": "Flag new-cart on", "source": "flags", "timestamp": "2026-03-01T10:05:00",
                 "custom_details": {"service": "cart"}},
    )
    changes = await recent_of_service(api, keys, sessions, "checkout", opened="2026-03-01T11:00:00+00:00")
    assert [(c["id"], c["summary"], c["source"], c["service"]) for c in changes] == [
        (change_id, "Deploy checkout v42", "deploy-bot", "checkout")]
    assert changes[0]["custom_details"] == {"version": "v42", "by": "ci"}
    assert changes[0]["links"] == [{"href": "https://ci.example/42", "text": "build 42"}]
    assert changes[0]["at"] == "2026-03-01T10:00:00Z"
    # custom_details.service names the service; a time without a zone is UTC.
    [flag] = await recent_of_service(api, keys, sessions, "cart", opened="2026-03-01T11:00:00+00:00")
    assert (flag["service"], flag["at"]) == ("cart", "2026-03-01T10:05:00Z")


async def recent_of_service(
    api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session], service: str, *, opened: str,
) -> list[dict]:
    """recent_changes of a fresh incident of `service`, its opening moved to `opened`."""
    number = await trigger(api, keys, f"probe-{service}", component=service)
    with sessions.begin() as session:
        session.execute(update(Incident).where(Incident.number == number).values(
            created_at=datetime.fromisoformat(opened)))
    return (await incident(api, keys, number))["recent_changes"]


async def test_changes_are_merged_into_the_timeline_and_listed_as_recent(
    api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, "merge-1", component="checkout")

    async def projected() -> dict | None:  # the workflow writes the timeline a moment after the 202
        detail = await incident(api, keys, number)
        return detail if detail["timeline"] else None

    detail = await eventually(projected)
    opened = datetime.fromisoformat(detail["created_at"])
    own = [e for e in detail["timeline"] if e["kind"] != "change"]
    assert own and detail["recent_changes"] == []

    async def change(summary: str, at: datetime, service: str = "checkout") -> None:
        body = {"routing_key": keys.integration, "payload": {
            "summary": summary, "source": "ci", "timestamp": at.isoformat(), "custom_details": {"service": service}}}
        resp = await api.post("/v2/change/enqueue", json=body)
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "success" and resp.json()["message"] == "Change event processed"

    await change("too old", opened - timedelta(hours=25))
    await change("deploy v1 (before)", opened - timedelta(hours=2))
    await change("other service", opened - timedelta(minutes=1), service="search")
    await change("config push (while open)", opened + timedelta(milliseconds=1))
    await change("in the future", datetime.now(UTC) + timedelta(hours=1))
    detail = await incident(api, keys, number)
    assert [c["summary"] for c in detail["recent_changes"]] == ["config push (while open)", "deploy v1 (before)"]
    merged = [e for e in detail["timeline"] if e["kind"] == "change"]
    assert [(e["message"], e["actor"], e["seq"]) for e in merged] == [("config push (while open)", "ci", 0)]
    # In its place by time, the incident's own entries in their order (more may have been projected since).
    assert [e for e in detail["timeline"] if e["kind"] != "change"][: len(own)] == own
    times = [datetime.fromisoformat(e["at"]) for e in detail["timeline"]]
    position = detail["timeline"].index(merged[0])
    assert all(t <= times[position] for t in times[:position]) and all(t > times[position] for t in times[position + 1:])


# --- PagerDuty's answers, the OpenAPI and the metrics ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/enqueue", "/v2/change/enqueue"])
async def test_refusals_use_pagerdutys_body(api: httpx.AsyncClient, keys: Keys, path: str) -> None:
    bad = {"routing_key": keys.integration, "event_action": "trigger", "payload": {"summary": "s", "source": "x",
                                                                                  "severity": "critical"},
           "links": "nope"} if path.endswith("change/enqueue") else {"routing_key": keys.integration,
                                                                   "event_action": "explode"}
    resp = await api.post(path, json=bad)
    assert resp.status_code == 400 and resp.json()["status"] == "invalid event", resp.text
    assert resp.json()["errors"][0].startswith(("event_action:", "links:"))
    # Without a valid key nothing of the body is described.
    for body in ({"event_action": "explode"}, {"routing_key": "nope", "payload": 1}, {"routing_key": 7}, [1]):
        resp = await api.post(path, json=body)
        assert (resp.status_code, resp.json()) == (400, {**INVALID, "errors": ["Invalid routing key"]})
    for raw in (b"{not json", b"\x80 not UTF-8"):
        resp = await api.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["errors"] == ["JSON parse error"], resp.text


async def test_openapi_documents_pagerdutys_400_and_no_422(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    for path in ("/v2/enqueue", "/v2/change/enqueue"):
        responses = schema["paths"][path]["post"]["responses"]
        assert "422" not in responses and {"202", "400", "413", "503"} <= set(responses)
        assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/PagerDutyError")
    assert "422" in schema["paths"]["/api/v1/integrations/alertmanager"]["post"]["responses"]
    assert set(schema["components"]["schemas"]["PagerDutyError"]["properties"]) == {"status", "message", "errors"}


def ingest_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics_text) if family.name == "vigil_ingest_requests"
        for s in family.samples if s.name == "vigil_ingest_requests_total"
    }


async def test_rejected_ingest_requests_are_counted(
    api: httpx.AsyncClient, worker: None, keys: Keys, settings: Settings,
) -> None:
    before = ingest_counts((await api.get("/metrics")).text)
    over_cap = b'{"padding": "' + b"x" * settings.api.max_body_bytes + b'"}'
    am = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A", "service": "db"}}]}
    calls = [
        api.post("/v2/enqueue", json={"routing_key": "nope"}),  # 400: unknown routing key
        api.post("/v2/enqueue", json={"routing_key": keys.integration, "event_action": "explode"}),  # 400
        api.post("/v2/enqueue", content=over_cap, headers={"Content-Type": "application/json"}),  # 413
        api.post("/v2/enqueue", json=pd_event(keys.integration, "counted-1")),  # 202
        api.post("/v2/change/enqueue", json={"routing_key": keys.integration}),  # 400
        api.post("/v2/change/enqueue", json={"routing_key": keys.integration, "payload": {"summary": "d"}}),  # 202
        api.post("/api/v1/integrations/alertmanager", json=am),  # 401
        api.post("/api/v1/integrations/alertmanager", json={"alerts": []}, headers=keys.auth(keys.integration)),  # 422
        api.post("/api/v1/integrations/alertmanager", content=over_cap, headers=keys.auth(keys.integration)),  # 413
    ]
    statuses = [(await call).status_code for call in calls]
    assert statuses == [400, 400, 413, 202, 400, 202, 401, 422, 413]
    after = ingest_counts((await api.get("/metrics")).text)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {
        ("enqueue", "400"): 2, ("enqueue", "413"): 1, ("enqueue", "202"): 1,
        ("change_enqueue", "400"): 1, ("change_enqueue", "202"): 1,
        ("alertmanager", "401"): 1, ("alertmanager", "422"): 1, ("alertmanager", "413"): 1,
    }
