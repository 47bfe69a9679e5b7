"""Shared FastAPI dependencies: settings, DB sessions, the Temporal client, and key auth."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.errors import ApiError
from api.keys.limiter import FailedAuthLimiter
from vigil.ingest.store import IntegrationInfo
from vigil.logging import get_logger
from vigil.models import ApiKey, Integration, User, utcnow
from vigil.security import LAST_USED_GRANULARITY, Role, hash_key
from vigil.settings import Settings
from vigil.ingest.delivery import Delivery
from vigil.temporal import TemporalUnavailable, bounded, connect

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class AppState:
    """Per-process state, built once in create_app."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    temporal: Client | None = None
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _jira_me: dict | None = None

    async def temporal_client(self) -> Client:
        """The Temporal client, connecting lazily so the API starts (and says not ready) without Temporal."""
        if self.temporal is not None:
            return self.temporal
        async with self._connect_lock:
            if self.temporal is None:
                try:
                    self.temporal = await asyncio.wait_for(connect(self.settings.temporal), timeout=5)
                except (RuntimeError, OSError, asyncio.TimeoutError) as err:
                    log.warning("temporal unreachable", address=self.settings.temporal.address, error=str(err))
                    raise TemporalUnavailable(str(err)) from err
        return self.temporal

    def jira_identity(self) -> dict | None:
        """The Jira integration account (`/myself`), learned once; None while Jira cannot be asked."""
        if self._jira_me is None and self.settings.jira.enabled:
            from activities.jira import make_client  # noqa: PLC0415 - only with Jira configured
            from jira import JIRAError  # noqa: PLC0415
            from requests import RequestException  # noqa: PLC0415

            try:
                self._jira_me = make_client(self.settings.jira).myself()
            except (JIRAError, RequestException) as err:
                log.warning("jira /myself unavailable; echo suppression falls back to the email", error=str(err))
        return self._jira_me

    @cached_property
    def auth_limiter(self) -> FailedAuthLimiter:
        """One per process: failed authentications per client address."""
        return FailedAuthLimiter(self.settings.api.auth_failure_limit)

    @cached_property
    def delivery(self) -> Delivery:
        """One per process: it caches the outbox size between requests."""
        return Delivery(self.sessions, self.settings, self.temporal_client)

    async def bounded(self, call: Awaitable[T]) -> T:
        """A workflow call with the API's deadline (503 `workflow_timeout` past it)."""
        return await bounded(call, self.settings.temporal.update_timeout_seconds)


def get_state(request: Request) -> AppState:
    return request.app.state.vigil


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_temporal(state: StateDep) -> Client:
    return await state.temporal_client()


TemporalDep = Annotated[Client, Depends(get_temporal)]

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Principal:
    user_id: int
    name: str
    email: str
    role: Role


def _unauthorized(message: str = "missing or invalid API key") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def authenticate(session: Session, creds: HTTPAuthorizationCredentials | None) -> Principal:
    if creds is None or not creds.credentials:
        raise _unauthorized()
    digest = hash_key(creds.credentials)
    row = session.execute(
        select(User, ApiKey).join(ApiKey, ApiKey.user_id == User.id).where(
            ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        if session.scalar(select(Integration.id).where(Integration.key_hash == digest)) is not None:
            raise ApiError(403, "forbidden", "integration keys are accepted only on the ingestion endpoints")
        raise _unauthorized()
    user, key = row
    now = utcnow()
    if key.expires_at is not None and key.expires_at <= now:
        raise _unauthorized(f"this API key expired at {key.expires_at.isoformat()}")
    touch_key(session, key.id, now)
    return Principal(user_id=user.id, name=user.name, email=user.email, role=Role(user.role))


def touch_key(session: Session, key_id: int, now: datetime) -> None:
    """Record the key's use at most once per LAST_USED_GRANULARITY: a write per request would serialise every
    request on SQLite. Conditional, so concurrent requests write it once."""
    stale = now - LAST_USED_GRANULARITY
    result = session.execute(
        update(ApiKey).where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale))
        .values(last_used_at=now)
    )
    if result.rowcount:
        session.commit()


def require(role: Role):  # noqa: ANN201 - returns a dependency
    """Dependency: an authenticated user with at least `role`."""

    def dependency(state: StateDep, creds: BearerDep, request: Request) -> Principal:
        client = request.client.host if request.client else "unknown"
        state.auth_limiter.check(client)
        # Its own short session: on SQLite a session held across the request would block the writes
        # the request itself makes.
        try:
            with state.sessions() as session:
                principal = authenticate(session, creds)
        except ApiError as err:
            if err.status == 401:
                state.auth_limiter.failed(client)
            raise
        if not principal.role.allows(role):
            raise ApiError(403, "forbidden", f"this needs the {role.value} role; your key has {principal.role.value}")
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Responder = Annotated[Principal, Depends(require(Role.responder))]
Admin = Annotated[Principal, Depends(require(Role.admin))]


def integration_by_key(session: Session, key: str | None) -> IntegrationInfo:
    """The integration a key belongs to; 401 for anything else (API keys included)."""
    if not key:
        raise _unauthorized("missing integration key")
    row = session.scalar(select(Integration).where(Integration.key_hash == hash_key(key)))
    if row is None:
        raise _unauthorized("unknown integration key")
    return IntegrationInfo.of(row)
