"""Integration keys, their rules and silences are kept in memory per API process (vigil/ingest/cache.py), and a
change made anywhere (another process, another host, plain SQL) applies to the next alert (issue 11).

Two apps stand for two API processes: each has its own engine, pool and cache, and only the database joins them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.main import create_app
from tests.conftest import Keys
from tests.helpers import pd_event
from vigil.models import AlertRow, HeldAlert, Integration, utcnow
from vigil.security import hash_key
from vigil.settings import Settings


class Process:
    """One API app over httpx, counting the connections its pool hands out."""

    def __init__(self, settings: Settings, client: Client) -> None:
        self.app = create_app(settings, client)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://vigil.test", timeout=60)
        self.checkouts = 0
        event.listen(self.app.state.vigil.engine, "checkout", self._count)

    def _count(self, *_: object) -> None:
        self.checkouts += 1

    async def close(self) -> None:
        await self.http.aclose()
        self.app.state.vigil.engine.dispose()


@pytest.fixture
async def processes(settings: Settings, client: Client) -> AsyncIterator[tuple[Process, Process]]:
    """Keys found in memory are trusted for an hour outside the ingest transaction: what these tests see of a
    change is the transaction's own check, however slow the machine."""
    trusting = settings.model_copy(update={"api": settings.api.model_copy(update={"key_cache_seconds": 3600})})
    a, b = Process(trusting, client), Process(trusting, client)
    yield a, b
    await a.close()
    await b.close()


async def enqueue(p: Process, keys: Keys, dedup_key: str, **kwargs: str) -> httpx.Response:
    return await p.http.post("/v2/enqueue", json=pd_event(keys.integration, dedup_key, **kwargs))


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_a_silence_made_through_one_process_holds_the_next_alert_sent_to_another(
    processes: tuple[Process, Process], worker: None, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    a, b = processes
    first = await enqueue(b, keys, "before-silence", component="payments")
    assert first.status_code == 202 and first.json()["message"].startswith("Event processed: INC-")  # b has read silences
    resp = await a.http.post(
        "/api/v1/silences", headers=keys.auth(keys.admin),
        json={"matchers": [{"name": "service", "value": "checkout"}],
              "ends_at": (utcnow() + timedelta(hours=1)).isoformat(), "reason": "maintenance"},
    )
    assert resp.status_code == 201, resp.text
    held = await enqueue(b, keys, "after-silence", component="checkout")
    assert held.status_code == 202 and held.json()["message"] == "Event processed: alert silenced", held.text

    # Expired through b: a, which has the silence in memory, pages the next alert.
    expired = await b.http.delete(f"/api/v1/silences/{resp.json()['id']}", headers=keys.auth(keys.admin))
    assert expired.status_code == 200, expired.text
    paged = await enqueue(a, keys, "after-expiry", component="checkout", klass="DiskFull")
    assert paged.json()["message"].startswith("Event processed: INC-"), paged.text
    assert count(sessions, HeldAlert) == 1


async def test_a_deleted_key_is_refused_by_a_process_that_has_it_in_memory(
    processes: tuple[Process, Process], worker: None, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    _, b = processes
    assert (await enqueue(b, keys, "known")).status_code == 202
    with sessions.begin() as session:  # any writer: the triggers see plain SQL too
        session.execute(delete(Integration).where(Integration.key_hash == hash_key(keys.integration_no_autoresolve)))
        session.execute(update(Integration).where(Integration.key_hash == hash_key(keys.integration))
                        .values(key_hash=hash_key("rotated")))
    refused = await enqueue(b, keys, "after-rotation", component="db")
    assert refused.status_code == 400 and refused.json()["errors"] == ["Invalid routing key"], refused.text
    assert count(sessions, AlertRow) == 1


async def test_rules_changed_through_one_process_route_the_next_alert_in_another(
    processes: tuple[Process, Process], worker: None, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    a, b = processes
    assert (await enqueue(b, keys, "unrouted")).status_code == 202
    with sessions() as session:
        integration_id = session.scalar(select(Integration.id).where(Integration.key_hash == hash_key(keys.integration)))
    rules = {"routes": [{"matchers": [{"name": "service", "value": "checkout"}], "service": "shop"}]}
    resp = await a.http.put(f"/api/v1/integrations/{integration_id}/rules", json=rules, headers=keys.auth(keys.admin))
    assert resp.status_code == 200, resp.text
    assert (await enqueue(b, keys, "routed", klass="Other")).status_code == 202
    with sessions() as session:
        assert session.scalar(select(AlertRow.service).where(AlertRow.fingerprint == "routed")) == "shop"

    # Held alerts are grouped by the rules of the transaction too (b has just read the key again: it is in memory).
    assert (await enqueue(b, keys, "routed", klass="Other")).status_code == 202
    rules["group_by"] = ["alertname"]
    resp = await a.http.put(f"/api/v1/integrations/{integration_id}/rules", json=rules, headers=keys.auth(keys.admin))
    assert resp.status_code == 200, resp.text
    silence = {"matchers": [{"name": "service", "value": "shop"}],
               "ends_at": (utcnow() + timedelta(hours=1)).isoformat(), "reason": "maintenance"}
    assert (await a.http.post("/api/v1/silences", headers=keys.auth(keys.admin), json=silence)).status_code == 201
    held = await enqueue(b, keys, "held", klass="Quiet")
    assert held.json()["message"] == "Event processed: alert silenced", held.text
    with sessions() as session:
        assert session.scalar(select(HeldAlert.group_key).where(HeldAlert.fingerprint == "held")) == "alertname=Quiet"


async def test_a_repeat_alert_takes_one_connection_and_a_new_one_two(
    processes: tuple[Process, Process], worker: None, keys: Keys
) -> None:
    """The key check, silences and storage share the one transaction; a new alert adds the short transaction
    that marks it delivered after Temporal took it. Nothing is pinged on checkout."""
    a, _ = processes
    assert (await enqueue(a, keys, "warm")).status_code == 202
    a.checkouts = 0
    assert (await enqueue(a, keys, "warm")).status_code == 202
    assert a.checkouts == 1
    a.checkouts = 0
    assert (await enqueue(a, keys, "new-fingerprint", klass="Other")).status_code == 202
    assert a.checkouts == 2


async def test_with_no_cache_age_a_deleted_key_cannot_resolve(
    settings: Settings, client: Client, worker: None, keys: Keys, sessions: sessionmaker[Session]
) -> None:
    """Outside the ingest transaction a key in memory is trusted for VIGIL_API_KEY_CACHE_SECONDS; at 0 the token
    is read on every request, so a deleted key cannot resolve an alert at all."""
    p = Process(settings.model_copy(update={"api": settings.api.model_copy(update={"key_cache_seconds": 0})}), client)
    try:
        assert (await enqueue(p, keys, "to-resolve")).status_code == 202
        with sessions.begin() as session:
            session.execute(delete(Integration).where(Integration.key_hash == hash_key(keys.integration_no_autoresolve)))
            session.execute(update(Integration).where(Integration.key_hash == hash_key(keys.integration))
                            .values(key_hash=hash_key("rotated")))
        resp = await enqueue(p, keys, "to-resolve", action="resolve")
        assert resp.status_code == 400 and resp.json()["errors"] == ["Invalid routing key"], resp.text
    finally:
        await p.close()
