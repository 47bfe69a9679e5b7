"""Silences hold matching alerts (stored, visible, no page) and release them when they end; backpressure
stores info alerts as suppressed."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from tests.conftest import Inbox, Keys, free_port
from tests.flows import handle_of, trigger
from tests.helpers import eventually, pd_event
from client.incidents import IncidentClient
from client.outbox import AlertOutbox
from vigil.models import Incident, utcnow
from vigil.settings import Settings
from workflows.incident import IncidentWorkflow


def incidents(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Incident)) or 0


async def silence(api: httpx.AsyncClient, keys: Keys, matchers: list[dict], minutes: int = 60) -> dict:
    resp = await api.post(
        "/api/v1/silences", headers=keys.auth(keys.admin),
        json={"matchers": matchers, "ends_at": (utcnow() + timedelta(minutes=minutes)).isoformat(),
              "reason": "maintenance of checkout"},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def held(api: httpx.AsyncClient, keys: Keys, status: str) -> list[dict]:
    resp = await api.get("/api/v1/alerts", params={"status": status}, headers=keys.auth(keys.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_silenced_alerts_are_stored_not_paged_and_open_when_the_silence_ends(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, inbox: Inbox, settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    s = await silence(api, keys, [{"name": "service", "value": "checkout"}, {"name": "alertname", "op": "=~", "value": "High.*"}])
    assert s["active"] is True

    for _ in range(2):
        resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "quiet-1"))
        assert resp.status_code == 202 and resp.json()["message"] == "Event processed: alert silenced"
    resolved_early = await api.post("/v2/enqueue", json=pd_event(keys.integration, "quiet-2", klass="HighLatency"))
    assert resolved_early.status_code == 202
    # quiet-2 resolves at its source while silenced: it must not open anything later.
    await api.post("/v2/enqueue", json=pd_event(keys.integration, "quiet-2", action="resolve"))
    assert incidents(sessions) == 0

    [quiet1, quiet2] = sorted(await held(api, keys, "silenced"), key=lambda a: a["fingerprint"])
    assert (quiet1["fingerprint"], quiet1["count"], quiet1["disposition"], quiet1["incident"]) == ("quiet-1", 2, "silenced", None)

    # Something the silence does not match pages as usual.
    other = await trigger(api, keys, dedup_key="loud", component="search", klass="HighLatency")
    await eventually(lambda: inbox.for_incident(other))

    ended = await api.delete(f"/api/v1/silences/{s['id']}", headers=keys.auth(keys.admin))
    assert ended.status_code == 200 and ended.json()["active"] is False

    outbox = AlertOutbox(sessions, settings, IncidentClient(sessions, settings, _get(client)))
    result = await outbox.redeliver()
    assert result.released == 1  # quiet-1 still fires; quiet-2 resolved while silenced
    [released] = [a for a in await held(api, keys, "silenced") if a["fingerprint"] == "quiet-1"]
    assert released["delivered"] is True
    number = int(released["incident"].removeprefix("INC-"))
    await eventually(lambda: inbox.for_incident(number))
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert list(state.alerts) == ["quiet-1"]
    assert (await outbox.redeliver()).released == 0  # once


async def test_a_silence_never_hides_updates_to_an_open_incident(
    api: httpx.AsyncClient, worker: None, keys: Keys, client: Client, sessions: sessionmaker[Session],
) -> None:
    number = await trigger(api, keys, dedup_key="open-1")
    await silence(api, keys, [{"name": "service", "value": "checkout"}])
    resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "open-1", action="resolve"))
    assert resp.status_code == 202
    state = await handle_of(client, number).query(IncidentWorkflow.state)
    assert state.status == "resolved"


async def test_silence_validation_and_roles(api: httpx.AsyncClient, keys: Keys) -> None:
    later = (utcnow() + timedelta(hours=1)).isoformat()
    bad_regex = {"matchers": [{"name": "service", "op": "=~", "value": "("}], "ends_at": later, "reason": "x"}
    resp = await api.post("/api/v1/silences", json=bad_regex, headers=keys.auth(keys.admin))
    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "body.matchers.0"
    past = {"matchers": [{"name": "service", "value": "a"}], "ends_at": "2020-01-01T00:00:00Z", "reason": "x"}
    assert (await api.post("/api/v1/silences", json=past, headers=keys.auth(keys.admin))).status_code == 422
    empty = {"matchers": [], "ends_at": later, "reason": "x"}
    assert (await api.post("/api/v1/silences", json=empty, headers=keys.auth(keys.admin))).status_code == 422
    ok = {"matchers": [{"name": "service", "value": "a"}], "ends_at": later, "reason": "x"}
    assert (await api.post("/api/v1/silences", json=ok, headers=keys.auth(keys.responder))).status_code == 403
    assert (await api.delete("/api/v1/silences/999999", headers=keys.auth(keys.admin))).status_code == 404
    listed = await api.get("/api/v1/silences", params={"active": True}, headers=keys.auth(keys.viewer))
    assert listed.status_code == 200 and listed.json() == []


async def test_backpressure_suppresses_info_but_never_critical(
    api: httpx.AsyncClient, worker: None, keys: Keys, settings: Settings, sessions: sessionmaker[Session],
) -> None:
    # A backlog: one alert stored while Temporal was unreachable (undelivered).
    down = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"})})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(down)), base_url="http://t") as offline:
        assert (await offline.post("/v2/enqueue", json=pd_event(keys.integration, "backlog", component="db"))).status_code == 503

    tight = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"backlog_limit": 0})})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(tight, api._transport.app.state.vigil.connection.client)),  # noqa: SLF001
                                 base_url="http://t") as http:
        info = await http.post("/v2/enqueue", json=pd_event(keys.integration, "noise", component="web", severity="info", klass="Chatty"))
        assert info.status_code == 202 and info.json()["message"] == "Event processed: alert suppressed"
        crit = await http.post("/v2/enqueue", json=pd_event(keys.integration, "fire", component="web", severity="critical", klass="Down"))
        assert crit.status_code == 202 and "INC-" in crit.json()["message"]
        metrics = (await http.get("/metrics")).text
        assert 'vigil_alerts_suppressed_total{integration="test-integration"}' in metrics
    [noise] = await held(api, keys, "suppressed")
    assert (noise["fingerprint"], noise["severity"], noise["incident"]) == ("noise", "info", None)


def _get(client: Client):  # noqa: ANN202
    async def get() -> Client:
        return client

    return get
