"""One engine per process; a session per request or per activity call."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


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
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                             pool_timeout=pool_timeout_seconds, connect_args={"options": options})

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


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
