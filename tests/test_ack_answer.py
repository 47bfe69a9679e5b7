"""What a transition answers (issue 11, the acknowledge's second pass): the whole incident, read from the
projection in five statements without a transaction around them on PostgreSQL, with the new timeline entry, the
alerts, the pages and the acknowledger; the assignee read from the timeline; the key check one statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import psycopg
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.deps import reading
from api.main import create_app
from tests.conftest import Keys
from tests.flows import attempts, trigger
from tests.helpers import eventually
from vigil.db import create_db_engine, session_factory
from vigil.models import ApiKey
from vigil.security import hash_key
from vigil.settings import Settings

INCIDENTS = "/api/v1/incidents"


@asynccontextmanager
async def app_and_engine(settings: Settings, client: Client) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    app = create_app(settings, client)
    engine = app.state.vigil.engine
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test", timeout=60) as http:
        yield http, engine
    engine.dispose()


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` runs meanwhile, but SQLite's BEGIN IMMEDIATE (psycopg's BEGIN and ROLLBACK are
    not seen here: the reading session's test below checks that there is none)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:  # noqa: ANN001
        if not statement.startswith("BEGIN"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_the_acknowledge_answers_with_its_timeline_entry_alerts_pages_and_acknowledger(
    worker: None, keys: Keys, settings: Settings, client: Client, sessions: sessionmaker[Session],
) -> None:
    async with app_and_engine(settings, client) as (api, engine):
        number = await trigger(api, keys, "answer-1", component="checkout")
        await eventually(lambda: [a.status for a in attempts(sessions, number)] == ["sent"])  # the first page
        auth = keys.auth(keys.responder)
        assert (await api.get(f"{INCIDENTS}/{number}", headers=auth)).status_code == 200  # the key's use recorded
        with statements(engine) as seen:
            resp = await api.post(f"{INCIDENTS}/INC-{number}/acknowledge", headers=auth, json={"note": "on it"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        # The key check is one statement, the answer five: the row, alerts, timeline, pages, changes.
        assert len(seen) == 6, seen
        assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")) for s in seen), seen

        assert (body["status"], body["acknowledged_by"], body["acknowledged_by_name"]) == (
            "acknowledged", "user:rita@test", "rita@test")
        [ack] = [e for e in body["timeline"] if e["kind"] == "acknowledged"]
        assert (ack["actor"], ack["actor_name"]) == ("user:rita@test", "rita@test") and "on it" in ack["message"]
        assert [(a["fingerprint"], a["service"]) for a in body["alerts"]] == [("answer-1", "checkout")]
        assert [(n["incident"], n["status"]) for n in body["notifications"]] == [(f"INC-{number}", "sent")]
        assert body["assignee"] is None and body["retriggers_at"] is not None

        # What a viewer then reads from the projection is the same incident.
        read = (await api.get(f"{INCIDENTS}/INC-{number}", headers=keys.auth(keys.viewer))).json()
        for field in ("status", "acknowledged_by", "acknowledged_at", "alerts", "timeline", "notifications",
                      "recent_changes"):
            assert read[field] == body[field], field


async def test_the_assignee_is_the_newest_assignment_in_the_timeline(
    api: httpx.AsyncClient, worker: None, keys: Keys,
) -> None:
    number = await trigger(api, keys, "assignee-1")
    auth = keys.auth(keys.responder)

    async def assignee_read() -> str | None:
        # Triggered: the projection alone answers (no workflow state to take the assignee from).
        body = (await api.get(f"{INCIDENTS}/{number}", headers=keys.auth(keys.viewer))).json()
        assert body["status"] == "triggered"
        return body["assignee"]

    for assignee in ("rita@test", "sam@test"):
        resp = await api.post(f"{INCIDENTS}/{number}/assign", headers=auth, json={"assignee": assignee})
        assert resp.status_code == 200 and resp.json()["assignee"] == assignee, resp.text
        assert await eventually(lambda: _is(assignee_read, assignee))
    resp = await api.post(f"{INCIDENTS}/{number}/assign", headers=auth, json={"assignee": None})
    assert resp.status_code == 200 and resp.json()["assignee"] is None, resp.text
    assert await eventually(lambda: _is(assignee_read, None))
    listed = (await api.get(INCIDENTS, headers=keys.auth(keys.viewer))).json()["items"]
    assert [i["assignee"] for i in listed if i["number"] == number] == [None]


async def _is(read, expected: str | None) -> bool:  # noqa: ANN001
    return (await read()) == expected


async def test_a_key_whose_use_was_just_recorded_is_checked_without_a_write(
    keys: Keys, settings: Settings, client: Client, sessions: sessionmaker[Session],
) -> None:
    async with app_and_engine(settings, client) as (api, engine):
        auth = keys.auth(keys.viewer)
        with statements(engine) as first:
            assert (await api.get(INCIDENTS, headers=auth)).status_code == 200
        with statements(engine) as second:
            assert (await api.get(INCIDENTS, headers=auth)).status_code == 200
    writes = [s for s in first if s.lstrip().upper().startswith("UPDATE api_keys".upper())]
    assert len(writes) == 1, first  # the first use is recorded
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in second), second
    with sessions() as session:
        assert session.scalar(select(ApiKey.last_used_at).where(ApiKey.key_hash == hash_key(keys.viewer)))


def test_a_reading_session_leaves_its_connection_transactional_for_the_next(database_url: str) -> None:
    """On PostgreSQL `reading` runs without BEGIN; the pooled connection it used must begin transactions again
    for the next session that takes it (a write that committed statement by statement would be a disaster)."""
    one = create_db_engine(database_url)  # a pool of its own: one connection, used one session after the other
    sessions = session_factory(one)
    try:
        if one.dialect.name == "sqlite":
            with reading(sessions) as session:
                assert session.execute(text("SELECT 1")).scalar() == 1
            return
        with reading(sessions) as session:
            session.execute(text("SELECT 1"))
            raw = session.connection().connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no transaction open
            used = id(raw)
        with sessions() as session:
            session.execute(text("SELECT 1"))
            raw = session.connection().connection.driver_connection
            assert id(raw) == used  # the same pooled connection (the only one the pool opened)
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert not raw.autocommit
    finally:
        one.dispose()
