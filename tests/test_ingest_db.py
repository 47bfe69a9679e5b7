"""The ingest path's database use (issue 11): one transaction stores a request's alerts, pooled connections are
not pinged on every checkout, and a database restart still does not fail the first request after it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

import vigil.db
from tests.conftest import Keys
from tests.helpers import pd_event
from vigil.db import create_db_engine
from vigil.models import AlertRow

def _is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _kill_connections(engine: Engine) -> int:
    """What a PostgreSQL restart does to every pooled connection: terminate their backends."""
    with engine.connect() as conn:
        killed = conn.scalar(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ))
    return int(killed or 0)


def _alerts(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(AlertRow)) or 0


async def test_killed_connections_do_not_fail_the_next_alert(
    api: httpx.AsyncClient, worker: None, keys: Keys, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The pool's connections die between two requests (no time to go idle): the store's transaction fails on
    its dead connection, the pool is invalidated and the transaction runs again on a fresh one: 202."""
    if not _is_postgresql(engine):
        pytest.skip("PostgreSQL only: SQLite has no server to restart")
    first = await api.post("/v2/enqueue", json=pd_event(keys.integration, "restart-1"))
    assert first.status_code == 202, first.text
    try:
        assert _kill_connections(engine) >= 1
        second = await api.post("/v2/enqueue", json=pd_event(keys.integration, "restart-2", component="db"))
        assert second.status_code == 202, second.text
    finally:
        engine.dispose()  # the suite's own pool (the worker's too) starts afresh for the tests after this one
    assert _alerts(sessions) == 2


def test_an_idle_connection_that_died_is_replaced_before_use(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection back in the pool longer than PING_IDLE_SECONDS is pinged on checkout: a dead one is replaced
    (with every older one) before the caller sees it, with no retry needed."""
    if not _is_postgresql(engine):
        pytest.skip("PostgreSQL only: SQLite has no server to restart")
    monkeypatch.setattr(vigil.db, "PING_IDLE_SECONDS", 0.0)  # every pooled connection counts as idle
    probe = create_db_engine(database_url)
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert _kill_connections(engine) >= 1
        with probe.connect() as conn:  # without the ping: "terminating connection due to administrator command"
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        probe.dispose()
        engine.dispose()
