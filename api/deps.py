"""Shared FastAPI dependencies: settings, DB sessions, the incident client and the alert outbox, and key auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import Engine, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.errors import DATABASE_BUSY, ApiError, database_busy, error_response
from api.keys.limiter import FailedAuthLimiter
from client.connection import Connection
from client.dedup_keys import DedupKeys
from client.incidents import IncidentClient
from client.outbox import AlertOutbox
from vigil.ingest.store import IntegrationInfo
from vigil.logging import get_logger
from vigil.models import ApiKey, Integration, User, utcnow
from vigil.rca.artifacts import ArtifactStore, build_artifact_store
from vigil.security import LAST_USED_GRANULARITY, Role, hash_key
from vigil.settings import Settings

log = get_logger(__name__)


@dataclass
class AppState:
    """Per-process state, built once in create_app."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    connection: Connection
    _jira_me: dict | None = None

    def jira_identity(self) -> dict | None:
        """The Jira integration account (`/myself`), learned once; None while Jira cannot be asked."""
        if self._jira_me is None and self.settings.jira.enabled:
            from jira import JIRAError  # noqa: PLC0415 - only with Jira configured
            from requests import RequestException  # noqa: PLC0415

            from vigil.jira_client import make_client  # noqa: PLC0415

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
    def incidents(self) -> IncidentClient:
        return IncidentClient(self.sessions, self.settings, self.connection.get)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """Chart PNGs and attachments (VIGIL_RCA_ARTIFACT_STORE); built once, on first use."""
        return build_artifact_store(self.settings.rca, self.settings.core)

    @cached_property
    def outbox(self) -> AlertOutbox:
        """One per process: it caches the outbox size between requests."""
        return AlertOutbox(self.sessions, self.settings, self.incidents)

    @cached_property
    def dedup_keys(self) -> DedupKeys:
        return DedupKeys(self.sessions, self.incidents)


def state_of(request: Request) -> AppState:
    return request.app.state.vigil


async def get_state(request: Request) -> AppState:
    # The dependencies that only hand out per-process objects are `async def`: FastAPI runs a plain `def`
    # dependency in its thread pool, a thread hop per dependency per request (a storm's alert took four).
    return state_of(request)


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_incidents(state: StateDep) -> IncidentClient:
    return state.incidents


async def get_outbox(state: StateDep) -> AlertOutbox:
    return state.outbox


async def get_dedup_keys(state: StateDep) -> DedupKeys:
    return state.dedup_keys


def get_artifacts(state: StateDep) -> ArtifactStore:
    return state.artifacts


# Each connects to Temporal on its first call, not here: a request refused earlier (401, 422) never waits on it.
IncidentsDep = Annotated[IncidentClient, Depends(get_incidents)]
OutboxDep = Annotated[AlertOutbox, Depends(get_outbox)]
DedupKeysDep = Annotated[DedupKeys, Depends(get_dedup_keys)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]

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


# The key check of every request with a user key, built once: a Core row, not User and ApiKey objects.
_USERS, _KEYS = User.__table__, ApiKey.__table__
_READ_KEY = (
    select(_USERS.c.id, _USERS.c.name, _USERS.c.email, _USERS.c.role, _KEYS.c.id.label("key_id"),
           _KEYS.c.expires_at, _KEYS.c.last_used_at)
    .join_from(_USERS, _KEYS, _KEYS.c.user_id == _USERS.c.id)
    .where(_KEYS.c.key_hash == bindparam("digest"), _KEYS.c.revoked_at.is_(None))
)
_IS_INTEGRATION_KEY = select(Integration.__table__.c.id).where(Integration.__table__.c.key_hash == bindparam("digest"))
_TOUCH_KEY = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"),
           or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at < bindparam("stale")))
    .values(last_used_at=bindparam("now"))
)


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads (and single-statement writes). On PostgreSQL its statements run without a transaction
    around them (autocommit): no BEGIN and no ROLLBACK, two round trips fewer per request, and under READ COMMITTED
    each statement sees what it would have seen inside one. SQLite keeps its transaction (its engine begins every
    one itself, db.py)."""
    with sessions() as session:
        if session.get_bind().dialect.name != "sqlite":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def authenticate(session: Session, creds: HTTPAuthorizationCredentials | None) -> Principal:
    if creds is None or not creds.credentials:
        raise _unauthorized()
    digest = hash_key(creds.credentials)
    row = session.execute(_READ_KEY, {"digest": digest}).first()
    if row is None:
        if session.scalar(_IS_INTEGRATION_KEY, {"digest": digest}) is not None:
            raise ApiError(403, "forbidden", "integration keys are accepted only on the ingestion endpoints")
        raise _unauthorized()
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise _unauthorized(f"this API key expired at {row.expires_at.isoformat()}")
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_GRANULARITY:
        touch_key(session, row.key_id, now)  # otherwise its use was recorded less than a granule ago
    return Principal(user_id=row.id, name=row.name, email=row.email, role=Role(row.role))


def touch_key(session: Session, key_id: int, now: datetime) -> None:
    """Record the key's use at most once per LAST_USED_GRANULARITY: a write per request would serialise every
    request on SQLite. Conditional, so concurrent requests write it once."""
    result = session.execute(_TOUCH_KEY, {"key_id": key_id, "stale": now - LAST_USED_GRANULARITY, "now": now})
    if result.rowcount:
        session.commit()


# Scope keys: authenticate_first's guard and the route's dependency share one check per request.
_PRINCIPAL = "vigil.principal"
_INTEGRATION = "vigil.integration"


def _bearer_token(request: Request) -> str | None:
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


def _principal(request: Request) -> Principal:
    if (cached := request.scope.get(_PRINCIPAL)) is not None:
        return cached
    state = state_of(request)
    client = request.client.host if request.client else "unknown"
    state.auth_limiter.check(client)
    token = _bearer_token(request)
    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None
    # Its own short session: on SQLite a session held across the request would block the writes
    # the request itself makes.
    try:
        with reading(state.sessions) as session:
            principal = authenticate(session, creds)
    except ApiError as err:
        # Only a key that was tried and is wrong counts: a request without one guesses nothing.
        if err.status == 401 and creds is not None:
            state.auth_limiter.failed(client)
        raise
    request.scope[_PRINCIPAL] = principal
    return principal


def require(role: Role):  # noqa: ANN201 - returns a dependency
    """Dependency: an authenticated user with at least `role` (checked before the body: authenticate_first)."""

    def guard(request: Request, _body: bytes | None = None) -> Principal:
        principal = _principal(request)
        if not principal.role.allows(role):
            raise ApiError(403, "forbidden", f"this needs the {role.value} role; your key has {principal.role.value}")
        return principal

    def dependency(request: Request, _creds: BearerDep) -> Principal:
        # `_creds` puts the bearer scheme in the OpenAPI; the key itself was read by the guard.
        return guard(request)

    dependency.guard = guard  # type: ignore[attr-defined]
    return dependency


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Responder = Annotated[Principal, Depends(require(Role.responder))]
Admin = Annotated[Principal, Depends(require(Role.admin))]


def _integration(request: Request, key: str | None) -> IntegrationInfo:
    """The integration of `key`; may read the database (the guards run it in a thread)."""
    if (cached := request.scope.get(_INTEGRATION)) is None:
        if not key:
            raise _unauthorized("missing integration key")
        state = state_of(request)
        # From memory while fresh (vigil/ingest/cache.py); the ingest transaction checks it again after a change.
        cached = state.outbox.cache.integration(state.sessions, key)
        if cached is None:
            raise _unauthorized("unknown integration key")
        request.scope[_INTEGRATION] = cached
    return cached


async def _integration_in_loop(request: Request, key: str | None) -> IntegrationInfo:
    """`_integration` without leaving the event loop while the key is fresh in memory (a storm's every request);
    otherwise it reads the database in a thread."""
    if (cached := request.scope.get(_INTEGRATION)) is not None:
        return cached
    if key and (hit := state_of(request).outbox.cache.remembered(key)) is not None:
        request.scope[_INTEGRATION] = hit
        return hit
    return await asyncio.to_thread(_integration, request, key)


def key_revoked() -> ApiError:
    """The key was deleted or rotated while its request was on its way: as if it had never been known."""
    return _unauthorized("unknown integration key")


def _routing_key(body: bytes | None) -> str | None:
    """`routing_key` of a PagerDuty event, read before the body is validated; None if there is none."""
    try:
        event = json.loads(body or b"")
    except ValueError:
        return None
    key = event.get("routing_key") if isinstance(event, dict) else None
    return key if isinstance(key, str) else None


def _bearer_integration_guard(request: Request, _body: bytes | None = None) -> IntegrationInfo:
    return _integration(request, _bearer_token(request))


async def bearer_integration(request: Request, _creds: BearerDep) -> IntegrationInfo:
    """Dependency: the integration of the `Authorization: Bearer` key (Alertmanager)."""
    return await _integration_in_loop(request, _bearer_token(request))


def _routing_key_guard(request: Request, body: bytes | None) -> IntegrationInfo:
    return _integration(request, _routing_key(body))


async def routing_key_integration(request: Request) -> IntegrationInfo:
    """Dependency: the integration of the body's `routing_key` (PagerDuty Events v2)."""
    return await _integration_in_loop(request, _routing_key(await request.body()))


bearer_integration.guard = _bearer_integration_guard  # type: ignore[attr-defined]
routing_key_integration.guard = _routing_key_guard  # type: ignore[attr-defined]
BearerIntegration = Annotated[IntegrationInfo, Depends(bearer_integration)]
RoutingKeyIntegration = Annotated[IntegrationInfo, Depends(routing_key_integration)]

Guard = Callable[[Request, bytes | None], object]


def _guards(dependant: Dependant) -> list[Guard]:
    found: list[Guard] = []
    for sub in dependant.dependencies:
        if (guard := getattr(sub.call, "guard", None)) is not None:
            found.append(guard)
        found += _guards(sub)
    return found


def authenticate_first(app: FastAPI) -> None:
    """A caller without a valid key gets 401/403, never a 422 that describes the body it should send.

    FastAPI runs the key dependencies before it validates parameters and body, but it refuses a body that is
    not JSON before any dependency runs; so a 422 is answered only once the route's key checks pass.
    """
    render_validation = app.exception_handlers[RequestValidationError]
    render_http = app.exception_handlers[StarletteHTTPException]

    async def validation_error(request: Request, exc: Exception) -> Response:
        return await _guard_then(request, exc, render_validation)

    async def http_error(request: Request, exc: Exception) -> Response:
        # FastAPI answers 400 for a body it cannot decode (not UTF-8), also before any dependency ran.
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 400:
            return await _guard_then(request, exc, render_http)
        return await render_http(request, exc)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


async def _guard_then(request: Request, exc: Exception, render: Callable[..., Awaitable[Response]]) -> Response:
    """The route's key checks, then the refusal of the request: a 401/403 wins over the body's problem."""
    route = request.scope.get("route")
    guards = _guards(route.dependant) if isinstance(route, APIRoute) else []

    def check() -> None:
        for guard in guards:
            # The body was not JSON: a PagerDuty routing_key cannot be read from it, which is a 401.
            guard(request, None)

    try:
        await asyncio.to_thread(check)
    except ApiError as err:
        return error_response(err.status, err.code, err.message, err.details, err.headers)
    except DATABASE_BUSY as err:
        return database_busy(request.url.path, err)
    return await render(request, exc)
