"""GET/POST /api/v1/incidents..."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal, Responder, SessionDep, StateDep, TemporalDep, Viewer
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
)
from api.metrics import API_TRANSITIONS
from vigil.contracts import (
    AcknowledgeInput,
    Actor,
    ActorKind,
    AssignInput,
    Channel,
    IncidentStatus,
    NoteInput,
    Offset,
    ResolveInput,
    Severity,
    SnoozeInput,
    workflow_id,
)
from vigil.logging import get_logger
from workflows.incident import IncidentWorkflow
from vigil.contracts import incident_ref

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
notifications = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
NotificationStatus = Literal["sending", "sent", "failed", "cancelled", "lost"]
Receipt = Literal["delivered", "failed", "ivr_answered", "ivr_no_answer"]
log = get_logger(__name__)


@router.get("", response_model=IncidentList, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def list_incidents(
    _user: Viewer,
    session: SessionDep,
    state: StateDep,
    status: IncidentStatus | None = None,
    severity: Severity | None = None,
    service_: Annotated[str | None, Query(alias="service")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> IncidentList:
    """Newest first; filter by status, severity and service."""
    return service.list_incidents(
        session=session, settings=state.settings, status=status, severity=severity, service=service_,
        limit=limit, offset=offset,
    )


@router.get("/{ref}", response_model=IncidentDetail, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404)})
def get_incident(ref: str, _user: Viewer, session: SessionDep, state: StateDep) -> IncidentDetail:
    """One incident (`INC-42` or `42`): state, alerts, timeline and notifications, from the projection."""
    return service.detail(session=session, settings=state.settings, number=service.number_of(ref))


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
    ref: str, user: Responder, state: StateDep, client: TemporalDep, body: AcknowledgeRequest | None = None
) -> IncidentDetail:
    """Stop the escalation. When this returns 200, no further page will start."""
    inp = AcknowledgeInput(actor=_actor(user), note=body.note if body else None)
    return await transition(state, client, ref, "acknowledge", IncidentWorkflow.acknowledge, inp)


@router.post("/{ref}/resolve", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def resolve(ref: str, body: ResolveRequest, user: Responder, state: StateDep, client: TemporalDep) -> IncidentDetail:
    """Resolve with a resolution note (required)."""
    inp = ResolveInput(actor=_actor(user), resolution=body.resolution)
    return await transition(state, client, ref, "resolve", IncidentWorkflow.resolve, inp)


@router.post("/{ref}/snooze", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def snooze(ref: str, body: SnoozeRequest, user: Responder, state: StateDep, client: TemporalDep) -> IncidentDetail:
    """Keep an acknowledged incident quiet for `minutes`; it re-triggers then unless resolved (409 otherwise)."""
    inp = SnoozeInput(actor=_actor(user), seconds=body.minutes * 60, note=body.note)
    return await transition(state, client, ref, "snooze", IncidentWorkflow.snooze, inp)


@router.post("/{ref}/notes", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def add_note(ref: str, body: NoteRequest, user: Responder, state: StateDep, client: TemporalDep) -> IncidentDetail:
    """A note on the incident's timeline; with Jira sync on, it is also added to the issue as a comment."""
    inp = NoteInput(actor=_actor(user), body=body.body)
    return await transition(state, client, ref, "note", IncidentWorkflow.add_note, inp)


@router.post("/{ref}/assign", response_model=IncidentDetail, responses=TRANSITION_ERRORS)
async def assign(ref: str, body: AssignRequest, user: Responder, state: StateDep, client: TemporalDep) -> IncidentDetail:
    """Set (or clear) who owns the incident; with Jira sync on, the issue is assigned to the Jira user with that email."""
    inp = AssignInput(actor=_actor(user), assignee=body.assignee)
    return await transition(state, client, ref, "assign", IncidentWorkflow.assign, inp)


def _actor(user: Principal) -> Actor:
    return Actor(kind=ActorKind.user, name=user.email)


async def transition(state, client, ref: str, name: str, update, inp) -> IncidentDetail:  # noqa: ANN001
    number = service.number_of(ref)
    current = await asyncio.to_thread(_current_status, state, number)  # 404 before touching Temporal
    handle = client.get_workflow_handle(workflow_id(number))
    try:
        await state.bounded(handle.execute_update(update, inp))
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == "InvalidTransition":
            API_TRANSITIONS.labels(transition=name, outcome="refused").inc()
            now = cause.details[0] if cause.details else current
            raise ApiError(409, "invalid_transition", cause.message, {"current_status": now}) from err
        if isinstance(cause, ApplicationError) and cause.type == "ResolutionRequired":
            raise ApiError(422, "validation_error", cause.message) from err
        raise
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        if current == "closed":  # the workflow has completed
            API_TRANSITIONS.labels(transition=name, outcome="refused").inc()
            raise ApiError(
                409, "invalid_transition", f"cannot {name} an incident that is closed", {"current_status": current}
            ) from err
        if current == "ended":  # its workflow was terminated (or failed, timed out) outside Vigil
            API_TRANSITIONS.labels(transition=name, outcome="refused").inc()
            raise ApiError(
                409, "invalid_transition",
                f"cannot {name} {incident_ref(number)}: its workflow ended outside Vigil and nothing pages for it; "
                "a new alert of its group opens a new incident",
                {"current_status": current},
            ) from err
        # Stored while Temporal was unreachable; its workflow starts when its alerts are redelivered.
        raise ApiError(
            503, "incident_not_started", f"{incident_ref(number)} has no running workflow yet; retry shortly",
            headers={"Retry-After": "5"},
        ) from err
    API_TRANSITIONS.labels(transition=name, outcome="ok").inc()
    live = await state.bounded(handle.query(IncidentWorkflow.state))
    log.info("incident updated", update=name, incident=incident_ref(number), workflow_id=handle.id, actor=inp.actor.label())
    return await asyncio.to_thread(_detail, state, number, live)


def _current_status(state, number: int) -> str:  # noqa: ANN001
    with state.sessions() as session:
        return service.get_row(session=session, number=number).status


def _detail(state, number: int, live) -> IncidentDetail:  # noqa: ANN001
    with state.sessions() as session:
        return service.detail(session=session, settings=state.settings, number=number, live=live)
