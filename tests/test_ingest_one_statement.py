"""A storm's common case in one statement (issue 11, PostgreSQL): alerts of one group that already has an open
incident are stored by store.store_repeats outside a transaction, only while the key and the silences are
unchanged since they were read; anything else goes through the ingest transaction as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from client import outbox as outbox_module
from tests.conftest import Keys
from tests.helpers import pd_event
from vigil.contracts import Alert, AlertLink, AlertStatus, Severity
from vigil.ingest import store
from vigil.models import AlertRow, IncidentGroup, Integration, utcnow
from vigil.security import hash_key

COMPARED = ("integration_id", "status", "summary", "severity", "service", "source", "starts_at", "ends_at", "count",
            "url", "delivered_status", "delivery_attempts")


@pytest.fixture
def postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite stores every request in the ingest transaction")


def _alert(fp: str, **kw: object) -> Alert:
    fields: dict = dict(
        fingerprint=fp, summary="Disk full on db-1 ünïcode", severity=Severity.warning, service="db", source="test",
        labels={"alertname": "DiskFull", "instance": "db-1", "quote": 'a "b"'}, annotations={"runbook": "x/y"},
        starts_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC), url="http://prometheus/graph?g0.expr=up",
    )
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def _row(session: Session, number: int, fp: str) -> AlertRow:
    return session.scalars(select(AlertRow).where(AlertRow.incident_number == number, AlertRow.fingerprint == fp)).one()


def _tokens(session: Session) -> tuple[str | None, str | None]:
    found = dict(session.execute(text("SELECT name, token FROM cache_versions")).all())
    return found.get("integrations"), found.get("silences")


async def test_the_statement_stores_what_the_transaction_stores(
    postgresql: None, api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
    engine: Engine,
) -> None:
    """Same columns (JSON as the ORM writes it, None links as JSON null), same counts, same outcomes, for one
    alert and for a batch with a repeated fingerprint."""
    resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "opener", component="db", klass="DiskFull"))
    assert resp.status_code == 202, resp.text
    with sessions() as session:
        integ = store.IntegrationInfo.of(
            session.scalars(select(Integration).where(Integration.key_hash == hash_key(keys.integration))).one())
        key, number = session.execute(select(IncidentGroup.group_key, IncidentGroup.incident_number)).one()
        tokens = _tokens(session)
    links = (AlertLink(href="http://runbook", text="runbook"),)
    for batch_of in (1, 3):
        a = [_alert(f"tx-{batch_of}-{i}", links=links if i else ()) for i in range(batch_of)]
        b = [_alert(f"st-{batch_of}-{i}", links=links if i else ()) for i in range(batch_of)]
        if batch_of > 1:  # a fingerprint twice in one request, the later copy resolved
            a.append(_alert(a[0].fingerprint, status=AlertStatus.resolved, ends_at=utcnow()))
            b.append(_alert(b[0].fingerprint, status=AlertStatus.resolved, ends_at=a[-1].ends_at))
        for _ in range(2):  # new, then repeats
            with sessions.begin() as session:
                by_tx = store.upsert_alerts(session, number=number, alerts=a, integration=integ)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                by_st = store.store_repeats(conn, key=key, alerts=b, integration=integ, tokens=tokens)
            assert by_st.incident is not None and by_st.incident.number == number and by_st.upserted is not None
            assert by_st.upserted.outcomes == by_tx.outcomes
            assert sorted(x.fingerprint[3:] for x in by_st.upserted.undelivered) == \
                sorted(x.fingerprint[3:] for x in by_tx.undelivered)
        with sessions() as session:
            for x, y in zip(a, b):
                rx, ry = _row(session, number, x.fingerprint), _row(session, number, y.fingerprint)
                assert [getattr(ry, c) for c in COMPARED] == [getattr(rx, c) for c in COMPARED]
                for column in ("labels", "annotations", "links"):
                    assert session.scalar(text(f"SELECT {column}::text FROM alerts WHERE id = :i"), {"i": ry.id}) == \
                        session.scalar(text(f"SELECT {column}::text FROM alerts WHERE id = :i"), {"i": rx.id})


async def test_a_changed_token_or_no_open_incident_stores_nothing(
    postgresql: None, api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
    engine: Engine,
) -> None:
    resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, "opener", component="db", klass="DiskFull"))
    assert resp.status_code == 202, resp.text
    with sessions() as session:
        integ = store.IntegrationInfo.of(
            session.scalars(select(Integration).where(Integration.key_hash == hash_key(keys.integration))).one())
        key = session.scalar(select(IncidentGroup.group_key))
        itok, stok = _tokens(session)
    alerts = [_alert("guarded")]
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for tokens in ((itok, "an older silences token"), ("an older integrations token", stok)):
            done = store.store_repeats(conn, key=key, alerts=alerts, integration=integ, tokens=tokens)
            assert done.incident is None and done.upserted is None and done.tokens == (itok, stok)
        done = store.store_repeats(conn, key="no-such-group", alerts=alerts, integration=integ, tokens=(itok, stok))
        assert done.incident is None and done.upserted is None
    with sessions() as session:
        assert session.scalar(select(AlertRow.id).where(AlertRow.fingerprint == "guarded")) is None


async def test_only_a_plain_repeat_skips_the_transaction(
    postgresql: None, api: httpx.AsyncClient, worker: None, keys: Keys, sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repeat (and a new alert) of a group with an open incident: one statement. A group's first alert, a
    silenced alert and an `info` alert: the transaction, with the outcomes it always gave."""
    calls = {"statement": 0, "stored": 0, "transaction": 0}
    real_statement, real_work = store.store_repeats, outbox_module.AlertOutbox._store_work

    def counted_statement(*args: object, **kwargs: object) -> store.StoredRepeats:
        done = real_statement(*args, **kwargs)  # type: ignore[arg-type]
        calls["statement"] += 1
        calls["stored"] += done.upserted is not None
        return done

    def counted_work(self: outbox_module.AlertOutbox, *args: object) -> object:
        calls["transaction"] += 1
        return real_work(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "store_repeats", counted_statement)
    monkeypatch.setattr(outbox_module.AlertOutbox, "_store_work", counted_work)

    async def send(dedup: str, **kw: str) -> dict:
        resp = await api.post("/v2/enqueue", json=pd_event(keys.integration, dedup, **kw))
        assert resp.status_code == 202, resp.text
        return resp.json()

    first = await send("a", component="db", klass="DiskFull")
    assert first["message"].startswith("Event processed: INC-")
    await send("a", component="db", klass="DiskFull")  # a repeat
    await send("b", component="db", klass="DiskFull")  # a new alert of the same group
    # Silences are read by the first transaction; both alerts after it went in one statement each.
    assert calls["stored"] == 2 and calls["transaction"] == 1, calls
    with sessions() as session:
        counts = dict(session.execute(select(AlertRow.fingerprint, AlertRow.count)).all())
    assert counts == {"a": 2, "b": 1}

    before = dict(calls)
    resp = await api.post("/api/v1/silences", headers=keys.auth(keys.admin), json={
        "matchers": [{"name": "service", "value": "quiet"}], "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
        "reason": "maintenance"})
    assert resp.status_code == 201, resp.text
    held = await send("c", component="quiet", klass="DiskFull")  # a new group, silenced
    assert held["message"] == "Event processed: alert silenced", held
    again = await send("c", component="quiet", klass="DiskFull")  # the silence is in memory now: no statement tried
    assert again["message"] == "Event processed: alert silenced", again
    info = await send("d", component="db", klass="DiskFull", severity="info")
    assert info["message"] == first["message"]
    assert calls["stored"] == before["stored"] and calls["transaction"] == before["transaction"] + 3, calls
