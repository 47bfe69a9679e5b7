"""IncidentClient: every message to an incident's workflow, addressed by name, refusals turned into domain errors.

The workflow is addressed by the names in vigil.contracts, never by importing workflows.*, so a process that
only talks to incidents (the API) never loads workflow or activity code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client import details
from client.connection import ClientGetter, bounded
from client.errors import (
    IncidentClosed,
    IncidentError,
    IncidentNotFound,
    NotStarted,
    PostmortemRequired,
    ResolutionRequired,
    TemporalUnavailable,
    TransitionRefused,
    WorkflowTimeout,
)
from vigil import search_attributes as sa
from vigil.contracts import (
    ACKNOWLEDGE,
    ADD_ALERTS,
    ADD_NOTE,
    ASSIGN,
    CLOSE,
    COMPLETE_POSTMORTEM,
    DELIVERY_RECEIPT,
    INCIDENT_WORKFLOW,
    PAGE_PRIORITY_KEY,
    POSTMORTEM_EDITED,
    REFUSED_CLOSED,
    REFUSED_NO_RESOLUTION,
    REFUSED_POSTMORTEM,
    REFUSED_TRANSITION,
    REOPEN,
    RESOLVE,
    SNOOZE,
    STATE_QUERY,
    WAIVE_POSTMORTEM,
    REFRESH_EVIDENCE,
    AcknowledgeInput,
    AddAlertsInput,
    AddAlertsResult,
    Alert,
    AssignInput,
    CloseInput,
    IncidentInput,
    IncidentState,
    IncidentStatus,
    JiraTarget,
    NoteInput,
    PostmortemDoneInput,
    RefreshEvidenceInput,
    PostmortemProgress,
    ReceiptInput,
    ReopenInput,
    ResolveInput,
    SnoozeInput,
    TransitionResult,
    incident_ref,
    workflow_id,
)
from vigil.ingest.store import IntegrationInfo, OpenIncident
from vigil.logging import get_logger
from vigil.models import Incident
from vigil.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")
# An update whose workflow task the server failed is run again (same id) this many times in all: `_update`.
UPDATE_ATTEMPTS = 3


class IncidentClient:
    """Every message to INC-<n>: open-or-add, the transitions (close included), the postmortem, receipts, state."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, client: ClientGetter) -> None:
        self.sessions = sessions
        self.settings = settings
        self.client = client

    async def _handle(self, number: int) -> WorkflowHandle:
        # No run id: a handle follows the incident across continue-as-new.
        return (await self.client()).get_workflow_handle(workflow_id(number))

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self.settings.temporal.update_timeout_seconds)

    # --- alerts -------------------------------------------------------------------------------------

    async def open_or_add(
        self, incident: OpenIncident, integration: IntegrationInfo, alerts: list[Alert], lead: Alert
    ) -> None:
        """Hand alerts to INC-<n>: a plain start carrying them for a new incident, else update-with-start.

        A start is durable once it returns and does not wait for a worker, so opening an incident costs one
        start (update-with-start waits for the workflow's first task: docs/benchmarks.md). Whoever created the
        incident row starts it; if the workflow exists already (a joiner's update-with-start got there first,
        or a retry), the batch goes as an update like any other. IncidentClosed: it takes no more alerts.
        """
        s = self.settings
        wid = workflow_id(incident.number)
        options = dict(
            id=wid,
            task_queue=s.temporal.task_queue,
            # A closed INC-<n> must never be started again under the same number.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.INCIDENT_NUMBER, wid),
                    SearchAttributePair(sa.INCIDENT_STATUS, IncidentStatus.triggered.value),
                    SearchAttributePair(sa.SEVERITY, incident.severity.value),
                    SearchAttributePair(sa.SERVICE, incident.service),
                    SearchAttributePair(sa.GROUP_KEY, incident.group_key),
                ]
            ),
            static_summary=details.static_summary(incident, lead),
            static_details=details.static_details(incident, lead, integration, s.core.public_url),
            # Its workflow tasks, and the pages they schedule, run ahead of bookkeeping (vigil/contracts.py).
            priority=Priority(priority_key=PAGE_PRIORITY_KEY),
        )
        inp = IncidentInput(
            number=incident.number,
            group_key=incident.group_key,
            service=incident.service,
            severity=incident.severity,
            title=incident.title,
            integration_id=integration.id,
            integration_name=integration.name,
            auto_resolve=integration.auto_resolve,
            hold_resolution_seconds=integration.hold_resolution_seconds,
            reopen_window_seconds=s.core.reopen_window_seconds,
            public_url=s.core.public_url,
            temporal_ui_url=s.temporal.ui_url,
            namespace=s.temporal.namespace,
            jira=JiraTarget(project_key=s.jira.project_key, min_severity=s.jira.min_severity) if s.jira.enabled else None,
            plan=incident.plan,
        )
        client = await self.client()
        if incident.created:
            try:
                await client.start_workflow(
                    INCIDENT_WORKFLOW, inp.model_copy(update={"alerts": alerts}),
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL, **options,
                )
                return
            except WorkflowAlreadyStartedError:
                pass  # running (or closed): deliver as an update below
        start = WithStartWorkflowOperation(
            INCIDENT_WORKFLOW, inp, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, **options
        )
        try:
            await self._bounded(
                client.execute_update_with_start_workflow(
                    ADD_ALERTS, AddAlertsInput(alerts=alerts), start_workflow_operation=start,
                    result_type=AddAlertsResult,
                )
            )
        except WorkflowUpdateFailedError as err:
            if (refused := _refusal(err, incident.number)) is None:
                raise
            raise refused from err
        except WorkflowAlreadyStartedError as err:
            _consume(start)
            raise IncidentClosed(incident.number) from err  # closed, and its id may not be reused
        except RPCError as err:
            _consume(start)
            if err.status == RPCStatusCode.ALREADY_EXISTS:
                raise IncidentClosed(incident.number) from err
            raise

    async def add_alerts(self, number: int, alerts: list[Alert]) -> AddAlertsResult:
        """Status changes of alerts INC-<n> already has; NotStarted when there is no workflow to tell."""
        handle = await self._handle(number)
        try:
            return await self._bounded(
                handle.execute_update(ADD_ALERTS, AddAlertsInput(alerts=alerts), result_type=AddAlertsResult)
            )
        except WorkflowUpdateFailedError as err:
            if (refused := _refusal(err, number)) is None:
                raise
            raise refused from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotStarted(number) from err
            raise

    # --- people and sources ---------------------------------------------------------------------------

    async def acknowledge(self, number: int, inp: AcknowledgeInput) -> TransitionResult:
        """Stop the escalation: once this returns, no further page starts."""
        return await self._transition(number, ACKNOWLEDGE, "acknowledge", inp)

    async def resolve(self, number: int, inp: ResolveInput) -> TransitionResult:
        return await self._transition(number, RESOLVE, "resolve", inp)

    async def snooze(self, number: int, inp: SnoozeInput) -> TransitionResult:
        return await self._transition(number, SNOOZE, "snooze", inp)

    async def note(self, number: int, inp: NoteInput) -> TransitionResult:
        return await self._transition(number, ADD_NOTE, "note", inp)

    async def assign(self, number: int, inp: AssignInput) -> TransitionResult:
        return await self._transition(number, ASSIGN, "assign", inp)

    async def reopen(self, number: int, inp: ReopenInput) -> TransitionResult:
        return await self._transition(number, REOPEN, "reopen", inp)

    async def close(self, number: int, inp: CloseInput) -> TransitionResult:
        """Close a resolved incident; PostmortemRequired while its required postmortem is a draft."""
        return await self._transition(number, CLOSE, "close", inp)

    async def complete_postmortem(self, number: int, inp: PostmortemDoneInput) -> TransitionResult:
        return await self._transition(number, COMPLETE_POSTMORTEM, "complete the postmortem of", inp)

    async def waive_postmortem(self, number: int, inp: PostmortemDoneInput) -> TransitionResult:
        """An admin closes the postmortem without one; the reason goes in the timeline."""
        return await self._transition(number, WAIVE_POSTMORTEM, "waive the postmortem of", inp)

    async def refresh_evidence(self, number: int, inp: RefreshEvidenceInput) -> TransitionResult:
        """Gather the postmortem's evidence again; it lands in the document a little later."""
        return await self._transition(number, REFRESH_EVIDENCE, "refresh the evidence of", inp)

    async def postmortem_edited(self, number: int, progress: PostmortemProgress) -> bool:
        """Tell the workflow how far the document is (its UI details); False when it could not be told.

        Best effort: the edit is already stored, and the next edit (or the draft) sends the count again, so an
        unreachable Temporal or an ended workflow is logged, never raised to the editor.
        """
        try:
            handle = await self._handle(number)
            await self._bounded(handle.signal(POSTMORTEM_EDITED, progress))
        except (RPCError, TemporalUnavailable, WorkflowTimeout) as err:
            log.warning("postmortem progress not signalled", incident=incident_ref(number),
                        workflow_id=workflow_id(number), error=type(err).__name__, detail=str(err)[:200])
            return False
        return True

    async def receipt(self, number: int, inp: ReceiptInput) -> None:
        """A provider's delivery receipt; one for an incident that is no longer running is dropped."""
        handle = await self._handle(number)
        try:
            await self._bounded(handle.signal(DELIVERY_RECEIPT, inp))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def state(self, number: int) -> IncidentState:
        """The workflow's live state (personal data masked, as in the UI)."""
        handle = await self._handle(number)
        return await self._bounded(handle.query(STATE_QUERY, result_type=IncidentState))

    async def _transition(self, number: int, update: str, verb: str, inp: BaseModel) -> TransitionResult:
        """Run one update; the one place its refusals become domain errors. The incident's row is read only
        when the update fails (IncidentNotFound, or what a missing workflow means), never on the way to it."""
        handle = await self._handle(number)
        try:
            result = await self._bounded(_update(handle, update, inp))
        except WorkflowUpdateFailedError as err:
            # An older workflow may not name the status it refused in: the row says it then.
            current = await asyncio.to_thread(self._status, number) if _unnamed_refusal(err) else None
            if (refused := _refusal(err, number, current)) is None:
                raise
            raise refused from err
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            current = await asyncio.to_thread(self._status, number)  # IncidentNotFound for an unknown number
            raise _no_workflow(number, current, verb) from err
        log.info("incident updated", update=update, incident=incident_ref(number), workflow_id=handle.id,
                 actor=inp.actor.label())  # type: ignore[attr-defined] - every transition input has an actor
        return result

    def _status(self, number: int) -> IncidentStatus:
        with self.sessions() as session:
            row = session.get(Incident, number)
            if row is None:
                raise IncidentNotFound(number)
            return IncidentStatus(row.status)


async def _update(handle: WorkflowHandle, update: str, inp: BaseModel) -> TransitionResult:
    """Run an update, again (same update id) if the workflow task that ran it was failed by the server.

    Temporal fails a workflow task that closes the workflow while a new event (a signal, a timer) arrived during
    it (UnhandledCommand), and the update it carried answers WorkflowNotReady: it was not applied, and the next
    workflow task sees both. Without this the caller of an ack or a close that raced a receipt got an error for
    a transition that then went through when they retried.
    """
    update_id = str(uuid.uuid4())
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        try:
            return await handle.execute_update(update, inp, id=update_id, result_type=TransitionResult)
        except RPCError as err:
            if attempt == UPDATE_ATTEMPTS or not _workflow_not_ready(err):
                raise
            log.info("update met a failed workflow task; running it again", update=update, workflow_id=handle.id,
                     attempt=attempt)
    raise AssertionError("unreachable")


def _workflow_not_ready(err: RPCError) -> bool:
    return err.status == RPCStatusCode.FAILED_PRECONDITION and any(
        d.type_url.endswith("WorkflowNotReadyFailure") for d in err.grpc_status.details
    )


def _refusal(err: WorkflowUpdateFailedError, number: int, current: IncidentStatus | None = None) -> Exception | None:
    """The domain error for an update the workflow refused; None when it is no business refusal."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return None
    if cause.type == REFUSED_CLOSED:
        return IncidentClosed(number, cause.message)
    if cause.type == REFUSED_NO_RESOLUTION:
        return ResolutionRequired(number, cause.message)
    if cause.type == REFUSED_POSTMORTEM:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return PostmortemRequired(number, cause.message, details)
    if cause.type == REFUSED_TRANSITION:
        # The workflow names the status it refused in; an older one may not have, and a postmortem refusal names
        # the postmortem's state (`not required`, `complete`), which its message carries.
        return TransitionRefused(number, _status_named(cause.details) or current or IncidentStatus.triggered,
                                 cause.message)
    return None


def _unnamed_refusal(err: WorkflowUpdateFailedError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == REFUSED_TRANSITION and _status_named(cause.details) is None


def _status_named(details: Sequence[object]) -> IncidentStatus | None:
    try:
        return IncidentStatus(details[0]) if details else None
    except (ValueError, TypeError):
        return None


def _no_workflow(number: int, current: IncidentStatus, verb: str) -> IncidentError:
    """No workflow answered for INC-<n>: what that means depends on what the incident's row says."""
    if current == IncidentStatus.closed:  # the workflow has completed
        return IncidentClosed(number, f"cannot {verb} an incident that is closed")
    if current == IncidentStatus.ended:  # its workflow was terminated (or failed, timed out) outside Vigil
        return TransitionRefused(
            number, current,
            f"cannot {verb} {incident_ref(number)}: its workflow ended outside Vigil and nothing pages for it; "
            "a new alert of its group opens a new incident",
        )
    # Stored while Temporal was unreachable; its workflow starts when its alerts are redelivered.
    return NotStarted(number)


def _consume(start: WithStartWorkflowOperation) -> None:
    """The refused start's handle future holds the same error; read it so asyncio does not log it as lost."""
    future = start._workflow_handle  # noqa: SLF001 - the SDK exposes it only as an awaitable
    if future.done() and not future.cancelled():
        future.exception()
