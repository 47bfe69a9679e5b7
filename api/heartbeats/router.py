"""/api/v1/heartbeats: heartbeat monitors (admin), and the check-in URL a job calls (its secret token is the key).

Each monitor is a durable timer in Temporal (`vigil-heartbeat-<id>`); a check-in is one signal to it. A miss
opens an incident for the monitor's service through the normal alert path; the next check-in resolves it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import select

from api.deps import Admin, StateDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError
from api.heartbeats import service
from api.heartbeats.schemas import CheckInResult, HeartbeatCreate, HeartbeatCreated, HeartbeatRead, HeartbeatUpdate
from api.access_log import redact_tokens_after
from client.heartbeats import HeartbeatClient, HeartbeatGone, HeartbeatRefused
from vigil.contracts import HeartbeatConfig, HeartbeatInput, Id
from vigil.models import HeartbeatMonitor
from vigil.security import new_key

router = APIRouter(prefix="/api/v1/heartbeats", tags=["heartbeat monitors"])
ADMIN = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422, 503)}
VIEW = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)}
Token = Annotated[str, Path(min_length=1, max_length=200, description="The monitor's check-in token.")]


redact_tokens_after("/heartbeats/check-in/")


def _heartbeats(state: StateDep) -> HeartbeatClient:
    return HeartbeatClient(state.settings, state.connection.get)


def _gone(monitor_id: int) -> ApiError:
    return ApiError(404, "not_found", f"heartbeat monitor {monitor_id} was deleted")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=HeartbeatCreated, responses=ADMIN)
async def create_heartbeat(body: HeartbeatCreate, user: Admin, state: StateDep) -> HeartbeatCreated:
    """A new monitor, missed if no check-in arrives within interval + grace; `token` is shown only here."""
    token = new_key("hb")

    def insert() -> HeartbeatMonitor:
        with state.sessions() as session:
            return service.create(session=session, body=body, token=token, actor=user.email)

    row = await asyncio.to_thread(insert)
    try:
        await _heartbeats(state).start(service.input_of(row))
    except BaseException:  # noqa: BLE001 - re-raised: whatever stopped the start, the row must go with it
        # No timer, no monitor: a row without its workflow would never be missed.
        await asyncio.to_thread(_delete, state, row.id)
        raise
    url = f"{state.settings.core.public_url.rstrip('/')}{service.CHECK_IN_PATH}/{token}"
    return HeartbeatCreated(**service.read(row).model_dump(), token=token, check_in_url=url)


@router.get("", response_model=list[HeartbeatRead], responses=VIEW)
def list_heartbeats(_user: Viewer, state: StateDep) -> list[HeartbeatRead]:
    """Every monitor, by id, with its status (waiting, up, down, paused)."""
    with state.sessions() as session:
        return [service.read(r) for r in session.scalars(select(HeartbeatMonitor).order_by(HeartbeatMonitor.id))]


@router.get("/{monitor_id:int}", response_model=HeartbeatRead, responses=VIEW)
def get_heartbeat(monitor_id: Id, _user: Viewer, state: StateDep) -> HeartbeatRead:
    with state.sessions() as session:
        return service.read(service.get(session=session, monitor_id=monitor_id))


@router.patch("/{monitor_id:int}", response_model=HeartbeatRead, responses=ADMIN)
async def update_heartbeat(monitor_id: Id, body: HeartbeatUpdate, _user: Admin, state: StateDep) -> HeartbeatRead:
    """Change, pause (`{"paused": true}`) or resume a monitor; the running timer takes it as an update."""

    def changed() -> HeartbeatInput:
        with state.sessions() as session:
            return service.changed(session=session, monitor_id=monitor_id, body=body)

    def save(config: HeartbeatConfig) -> HeartbeatRead:
        with state.sessions() as session:
            return service.read(service.save_config(session=session, monitor_id=monitor_id, config=config))

    inp = await asyncio.to_thread(changed)
    try:
        taken = await _heartbeats(state).configure(inp)
    except HeartbeatGone:
        raise _gone(monitor_id) from None
    except HeartbeatRefused as err:
        raise ApiError(422, "validation_error", str(err)) from None
    return await asyncio.to_thread(save, taken.config)


@router.delete("/{monitor_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN)
async def delete_heartbeat(monitor_id: Id, _user: Admin, state: StateDep) -> None:
    """Stop the timer (a firing alert is resolved) and forget the monitor; its token stops working."""

    def exists() -> None:
        with state.sessions() as session:
            service.get(session=session, monitor_id=monitor_id)

    await asyncio.to_thread(exists)
    await _heartbeats(state).stop(monitor_id)
    await asyncio.to_thread(_delete, state, monitor_id)


CHECK_IN = {k: ERROR_RESPONSES[k] for k in (404, 422, 503)}


@router.post("/check-in/{token}", response_model=CheckInResult, responses=CHECK_IN)
@router.get("/check-in/{token}", response_model=CheckInResult, responses=CHECK_IN)
async def check_in(token: Token, state: StateDep) -> CheckInResult:
    """The job is alive: reset its monitor's timer (and resolve its alert if it was missed). No API key: the
    token in the path is the secret. GET too, for `curl` in a crontab."""

    def find() -> HeartbeatInput:
        with state.sessions() as session:
            return service.input_of(service.by_token(session=session, token=token))

    inp = await asyncio.to_thread(find)
    try:
        await _heartbeats(state).check_in(inp)
    except HeartbeatGone:
        raise _gone(inp.monitor_id) from None
    await asyncio.to_thread(_checked_in, state, inp.monitor_id)
    return CheckInResult(status="ok", monitor=inp.config.name)


def _checked_in(state: StateDep, monitor_id: int) -> None:
    with state.sessions() as session:
        service.checked_in(session=session, monitor_id=monitor_id)


def _delete(state: StateDep, monitor_id: int) -> None:
    with state.sessions() as session:
        service.delete(session=session, monitor_id=monitor_id)
