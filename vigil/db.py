"""One engine per process; a session per request or per activity call."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from vigil.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")
# A pooled PostgreSQL connection idle longer than this is pinged before use (see _ping_when_idle).
PING_IDLE_SECONDS = 1.0


def create_db_engine(
    url: str, *, lock_timeout_seconds: float = 30.0, statement_timeout_seconds: float | None = None,
    pool_timeout_seconds: float = 30.0,
) -> Engine:
    """Engine with SQLite tuned for concurrent writers (WAL, busy timeout, BEGIN IMMEDIATE).

    The timeouts bound how long a caller waits on a held lock (SQLite busy timeout, PostgreSQL lock_timeout),
    a slow statement (PostgreSQL statement_timeout) and a free pooled connection; past them SQLAlchemy raises
    OperationalError or TimeoutError, which the API answers as 503 with Retry-After.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        options = f"-c lock_timeout={int(lock_timeout_seconds * 1000)}"
        if statement_timeout_seconds is not None:
            options += f" -c statement_timeout={int(statement_timeout_seconds * 1000)}"
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_timeout=pool_timeout_seconds,
                               connect_args={"options": options})
        _ping_when_idle(engine, PING_IDLE_SECONDS)
        return engine

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    busy_ms = int(lock_timeout_seconds * 1000)
    engine = create_engine(url, connect_args={"timeout": lock_timeout_seconds, "check_same_thread": False},
                           pool_size=20, pool_timeout=pool_timeout_seconds)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # pysqlite's own BEGIN handling is off so that we can issue BEGIN IMMEDIATE: with a
        # deferred BEGIN two writers can both read, then one fails with "database is locked".
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """pool_pre_ping's safety without its cost under load: a connection is pinged on checkout only when it sat
    in the pool longer than `idle_seconds`, so a connection that died while idle (a database restart, an idle
    timeout, a terminated backend) is replaced before a request sees it; under load connections come back
    within milliseconds and are used without a round trip. A connection that dies between two close uses
    fails its statement; the pool is then invalidated (SQLAlchemy drops every older connection), and
    `transaction` retries the work once on a fresh connection."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= idle_seconds:
            return  # new, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as err:  # noqa: BLE001 - whatever the driver raises, the connection is unusable
            # The pool drops this connection and every older one (a restart killed them all) and opens another.
            raise InvalidatePoolError(f"stale pooled connection: {err}") from err


def transaction(
    sessions: sessionmaker[Session], work: Callable[[Session], T], *, write: bool = True, retries: int = 1
) -> T:
    """Run `work` in one transaction, committed when it returns (`write=False`: a read, never committed, which
    on SQLite takes no write lock); run it again (once by default) on a fresh connection when the connection
    turned out to be dead (a database restart): the failed attempt was rolled back with its connection, so
    nothing of it is kept."""
    for attempt in range(retries + 1):
        try:
            with sessions.begin() if write else sessions() as session:
                return work(session)
        except DBAPIError as err:
            if not err.connection_invalidated or attempt == retries:
                raise
            log.warning("database connection lost; retrying the transaction on a new one", error=str(err.orig))
    raise AssertionError("unreachable")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
