"""GET/POST /api/v1/incidents..."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from api.deps import IncidentsDep, Principal, Responder, SessionDep, StateDep, Viewer, reading
from api.errors import ERROR_RESPONSES, ApiError
from api.incidents import service
from api.incidents.schemas import (
    AcknowledgeRequest,
    AssignRequest,
    IncidentDetail,
    IncidentList,
    JiraSync,
    NoteRequest,
    NotificationList,
    ResolveRequest,
    SnoozeRequest,
    StatusFilter,
)
from api.metrics import counted
from client.errors import IncidentError, TemporalUnavailable, WorkflowTimeout
from client.incidents import IncidentClient
from vigil.contracts import (
    AcknowledgeInput,
    Actor,
    ActorKind,
    AssignInput,
    Channel,
    IncidentState,
    IncidentStatus,
    NoteInput,
    Offset,
    ResolveInput,
    Severity,
    SnoozeInput,
    TransitionResult,
)

from vigil.ingest.fit import as_utc
from vigil.logging import get_logger
from vigil.security import Role

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
log = get_logger(__name__)
notifications = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
NotificationStatus = Literal["sending", "sent", "failed", "cancelled", "lost"]
Receipt = Literal["delivered", "failed", "ivr_answered", "ivr_no_answer"]


@router.get("", response_model=IncidentList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def list_incidents(
    _user: Viewer,
    session: SessionDep,
    state: StateDep,
    status: Annotated[list[StatusFilter], Query(description="Repeat for several; `open`: triggered, acknowledged or resolved.")] = [],  # noqa: B006 - FastAPI copies it
    severity: Severity | None = None,
    service_: Annotated[str | None, Query(alias="service")] = None,
    assignee: Annotated[str | None, Query(max_length=320, description="The owner's email.")] = None,
    opened_after: Annotated[datetime | None, Query(description="Opened at or after (no zone: UTC).")] = None,
    opened_before: Annotated[datetime | None, Query(description="Opened before (no zone: UTC).")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> IncidentList:
    """Newest first; filter by status (several, or `open`), severity, service, assignee and when it opened."""
    if opened_after and opened_before and as_utc(opened_after) >= as_utc(opened_before):  # type: ignore[operator]
        raise ApiError(422, "invalid_range", "opened_after must be before opened_before",
                       {"opened_after": opened_after.isoformat(), "opened_before": opened_before.isoformat()})
    return service.list_incidents(
        session=session, settings=state.settings, status=status, severity=severity, service=service_,
        limit=limit, offset=offset, assignee=assignee, opened_after=opened_after, opened_before=opened_before,
    )


@router.get("/{ref}", response_model=IncidentDetail, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404)})
async def get_incident(ref: str, user: Viewer, state: StateDep, incidents: IncidentsDep) -> IncidentDetail:
    """One incident (`INC-42` or `42`): state, alerts, timeline and notifications, from the projection; an
    acknowledged one asks its workflow until when it stays quiet (without an answer, those fields are null)."""
    number = service.number_of(ref)
    row_status = await asyncio.to_thread(_status, state, number)
    live = None
    if row_status == IncidentStatus.acknowledged.value:
        try:
            live = await incidents.state(number)
        except (IncidentError, TemporalUnavailable, WorkflowTimeout, RPCError, WorkflowQueryFailedError) as err:
            log.warning("incident read without its live state", incident=ref, error=type(err).__name__)
    return await asyncio.to_thread(_projected, state, number, live, user.role.allows(Role.responder))


def _status(state, number: int) -> str:  # noqa: ANN001
    with state.sessions() as session:
        return service.get_row(session=session, number=number).status


@router.get(
    "/{ref}/notifications", response_model=NotificationList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)}
)
def incident_notifications(
    ref: str, _user: Viewer, session: SessionDep, status: NotificationStatus | None = None,
    channel: Channel | None = None, limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 200,
    offset: Annotated[Offset, Query()] = 0,
) -> NotificationList:
    """Every notification attempt of one incident: channel, target, provider message id, key, status, timing."""
    return service.list_notifications(
        session=session, number=service.number_of(ref), status=status, channel=channel and channel.value,
        limit=limit, offset=offset,
    )


@router.get("/{ref}/jira", response_model=JiraSync, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404)})
def incident_jira(ref: str, _user: Viewer, session: SessionDep, state: StateDep) -> JiraSync:
    """The incident's Jira issue and its sync log: direction, operation, status, error, latency."""
    return service.jira_sync(session=session, settings=state.settings, number=service.number_of(ref))


@notifications.get("", response_model=NotificationList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def list_notifications(
    _user: Viewer, session: SessionDep, status: NotificationStatus | None = None, channel: Channel | None = None,
    receipt: Receipt | None = None, limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> NotificationList:
    """Notification attempts across incidents, newest first (`?status=failed` for the ones that did not go out)."""
    return service.list_notifications(
        session=session, status=status, channel=channel and channel.value, receipt=receipt, limit=limit,
        offset=offset,
    )


TRANSITION_ERRORS = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422, 503)}


@router.post("/{ref}/acknowledge", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def acknowledge(
    ref: str, user: Responder, state: StateDep, incidents: IncidentsDep, body: AcknowledgeRequest | None = None
) -> IncidentDetail:
    """Stop the escalation. When this returns 200, no further page will start."""
    number = service.number_of(ref)
    inp = AcknowledgeInput(actor=_actor(user), note=body.note if body else None)
    result = await counted("acknowledge", incidents.acknowledge(number, inp))
    return await _detail(state, incidents, number, result)


@router.post("/{ref}/resolve", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def resolve(
    ref: str, body: ResolveRequest, user: Responder, state: StateDep, incidents: IncidentsDep
) -> IncidentDetail:
    """Resolve with a resolution note (required)."""
    number = service.number_of(ref)
    result = await counted("resolve", incidents.resolve(number, ResolveInput(actor=_actor(user), resolution=body.resolution)))
    return await _detail(state, incidents, number, result)


@router.post("/{ref}/snooze", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def snooze(
    ref: str, body: SnoozeRequest, user: Responder, state: StateDep, incidents: IncidentsDep
) -> IncidentDetail:
    """Keep an acknowledged incident quiet for `minutes`; it re-triggers then unless resolved (409 otherwise)."""
    number = service.number_of(ref)
    inp = SnoozeInput(actor=_actor(user), seconds=body.minutes * 60, note=body.note)
    result = await counted("snooze", incidents.snooze(number, inp))
    return await _detail(state, incidents, number, result)


@router.post("/{ref}/notes", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def add_note(
    ref: str, body: NoteRequest, user: Responder, state: StateDep, incidents: IncidentsDep
) -> IncidentDetail:
    """A note on the incident's timeline; with Jira sync on, it is also added to the issue as a comment."""
    number = service.number_of(ref)
    result = await counted("note", incidents.note(number, NoteInput(actor=_actor(user), body=body.body)))
    return await _detail(state, incidents, number, result)


@router.post("/{ref}/assign", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def assign(
    ref: str, body: AssignRequest, user: Responder, state: StateDep, incidents: IncidentsDep
) -> IncidentDetail:
    """Set (or clear) who owns the incident; with Jira sync on, the issue is assigned to the Jira user with that email."""
    number = service.number_of(ref)
    result = await counted("assign", incidents.assign(number, AssignInput(actor=_actor(user), assignee=body.assignee)))
    return await _detail(state, incidents, number, result)


def _actor(user: Principal) -> Actor:
    return Actor(kind=ActorKind.user, name=user.email)


async def _detail(state, incidents: IncidentClient, number: int, result: TransitionResult) -> IncidentDetail:  # noqa: ANN001
    """The projected incident with the workflow's live state, which the projection may not have caught up to
    (a responder made the change: the acknowledger is shown unmasked). The state is the update's own result when
    the workflow sends it; otherwise the workflow is asked."""
    live = result.state if result.state is not None else await incidents.state(number)
    return await asyncio.to_thread(_projected, state, number, live, True)


def _projected(state, number: int, live: IncidentState | None, unmask: bool = False) -> IncidentDetail:  # noqa: ANN001
    with reading(state.sessions) as session:
        return service.detail(session=session, settings=state.settings, number=number, live=live, unmask=unmask)
