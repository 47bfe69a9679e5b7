"""What Temporal knows about an incident's workflow beyond its own code: who asked to cancel it, and which
incidents' workflows ended outside Vigil (terminated, timed out, failed, or cancelled before cancellation was
handled), so that no incident is left listed as open while nothing pages for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from vigil.contracts import (
    INCIDENT_WORKFLOW,
    CancelRequest,
    CancelRequestInput,
    EndedCheckInput,
    EndedCheckResult,
    IncidentStatus,
    parse_incident_number,
)
from vigil.outbox import Outbox
from vigil.logging import get_logger
from vigil.ingest.store import in_outbox
from vigil.models import AlertRow, Incident, IncidentGroup, NotificationAttempt, TimelineEvent, utcnow
from vigil.contracts import incident_ref, workflow_id

log = get_logger(__name__)
# How an ended workflow shows in the API (`workflow_status`); Running, Completed and ContinuedAsNew are not ended.
ENDED = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CANCELED: "canceled",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}
ENDED_QUERY = '"Terminated", "Canceled", "Failed", "TimedOut"'
OPEN = (IncidentStatus.triggered.value, IncidentStatus.acknowledged.value, IncidentStatus.resolved.value)
# Longer than any send attempt may run (start-to-close: 30 s, 60 s for incidents from before policies): an
# attempt still `sending` after this was timed out by Temporal.
LOST_AFTER = timedelta(minutes=2)
# Ended workflows are looked for among those closed this recently (a reconciler down longer than this
# misses them; the runbook's visibility query finds any).
ENDED_WINDOW = timedelta(days=1)
# An incident row this old with no alert delivered or waiting: its workflow was never started.
NEVER_STARTED_AFTER = timedelta(minutes=5)
NEVER_STARTED = "not_started"


class LifecycleActivities:
    def __init__(
        self, sessions: sessionmaker[Session], client: Callable[[], Awaitable[Client]], delivery: Outbox
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.delivery = delivery

    @activity.defn
    async def cancel_request(self, inp: CancelRequestInput) -> CancelRequest:
        """Who asked to cancel the run, and why: its WorkflowExecutionCancelRequested event."""
        # The workflow itself is given only the reason; the identity is in its history.
        client = await self.client()
        async for event in _newest_first(client, inp.workflow_id, inp.run_id):
            if event.HasField("workflow_execution_cancel_requested_event_attributes"):
                attrs = event.workflow_execution_cancel_requested_event_attributes
                return CancelRequest(identity=attrs.identity, reason=attrs.cause)
        return CancelRequest()

    @activity.defn
    async def check_ended_incidents(self, inp: EndedCheckInput) -> EndedCheckResult:
        """Find incidents open in the DB whose workflow has ended, or never started: mark them `ended`, page
        the operator."""
        client = await self.client()
        # What ended recently, not every open incident: the check costs what ended, even at 10,000 open.
        since = (utcnow() - ENDED_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f'WorkflowType = "{INCIDENT_WORKFLOW}" AND ExecutionStatus IN ({ENDED_QUERY}) AND CloseTime > "{since}"'
        )
        ended: dict[int, tuple[str, str]] = {}
        async for execution in client.list_workflows(query):
            number = parse_incident_number(execution.id)
            status = ENDED.get(execution.status) if execution.status else None
            if number is not None and status is not None:
                ended[number] = (status, execution.run_id or "")
        still_open = await asyncio.to_thread(self._still_open, list(ended))
        result = EndedCheckResult(checked=len(ended))
        for number in still_open:
            status, run_id = ended[number]
            how = await _how_it_ended(client, workflow_id(number), run_id)
            message = (
                f"Workflow {status} outside Vigil{how}: nothing pages for this incident any more. "
                "A new alert of its group opens a new incident."
            )
            if await self._report(number, status, message):
                result.ended.append(number)
        for number in await asyncio.to_thread(self._stranded, inp.max_incidents):
            if await _workflow_exists(client, number):
                continue
            message = (
                "Its workflow never started and nothing is left to start it: every alert of it was dead-lettered "
                "(GET /api/v1/alerts?status=dead_letter), or it has none. Nothing pages for this incident."
            )
            if await self._report(number, NEVER_STARTED, message):
                result.ended.append(number)
        return result

    async def _report(self, number: int, status: str, message: str) -> bool:
        """Page the operator, then mark the row ended; False if another check got there first."""
        # Paging first: the key deduplicates, so a crash before the row is marked still pages only once.
        wording = "never started" if status == NEVER_STARTED else f"was {status} outside Vigil"
        operator = await self.delivery.page_operator(
            key=f"workflow-ended/{incident_ref(number)}",
            summary=f"{incident_ref(number)}'s workflow {wording}: nothing pages for it",
            details={
                "incident": incident_ref(number), "workflow_status": status, "detail": message,
                "runbook": "docs/runbook.md#incidents-whose-workflow-ended-outside-vigil",
            },
        )
        if operator is not None:
            message += f" The operator was paged ({incident_ref(operator)})."
        marked = await asyncio.to_thread(self._mark_ended, number, status, message)
        if marked:
            log.error("incident workflow ended outside Vigil", incident=incident_ref(number), workflow_status=status,
                      operator_incident=operator)
        return marked

    @activity.defn(no_thread_cancel_exception=True)
    def close_lost_attempts(self, inp: EndedCheckInput) -> int:
        """Close attempts left `sending` past any attempt's timeout as `lost`; how many."""
        # Their worker died and no retry followed (an ack came first, or it was the last attempt); a retry
        # closes its own earlier attempts when it starts.
        cutoff = utcnow() - LOST_AFTER
        with self.sessions.begin() as session:
            closed = session.execute(
                update(NotificationAttempt)
                .where(NotificationAttempt.status == "sending", NotificationAttempt.started_at < cutoff)
                .values(status="lost", finished_at=utcnow(),
                        error=f"no outcome recorded within {LOST_AFTER.seconds} s: its worker stopped mid-send")
            ).rowcount
        if closed:
            log.warning("notification attempts closed as lost", attempts=closed)
        return closed

    def _still_open(self, numbers: list[int]) -> list[int]:
        with self.sessions() as session:
            return list(session.scalars(
                select(Incident.number).where(Incident.number.in_(numbers), Incident.status.in_(OPEN))
                .order_by(Incident.number)
            )) if numbers else []

    def _stranded(self, limit: int) -> list[int]:
        """Open incidents, older than a start could take, none of whose alerts reached a workflow or still
        waits in the outbox: only their workflow's absence can explain them (all dead-lettered, or none)."""
        reached_or_waiting = select(AlertRow.id).where(
            AlertRow.incident_number == Incident.number,
            or_(AlertRow.delivered_status.is_not(None), in_outbox()),
        )
        with self.sessions() as session:
            return list(session.scalars(
                select(Incident.number)
                .where(Incident.status.in_(OPEN), Incident.created_at < utcnow() - NEVER_STARTED_AFTER,
                       ~reached_or_waiting.exists())
                .order_by(Incident.number).limit(limit)
            ))

    def _mark_ended(self, number: int, status: str, message: str) -> bool:
        """Status `ended` with Temporal's status, a timeline entry, its lost pages closed, its group released."""
        with self.sessions.begin() as session:
            row = session.get(Incident, number, with_for_update=True)
            if row is None or row.status not in OPEN:
                return False
            now = utcnow()
            row.status, row.workflow_status, row.ended_at = IncidentStatus.ended.value, status, now
            last = session.scalar(select(func.max(TimelineEvent.seq)).where(TimelineEvent.incident_number == number))
            session.add(TimelineEvent(
                incident_number=number, seq=(last or 0) + 1, at=now, kind="ended", actor="system:temporal",
                message=message,
            ))
            session.execute(
                update(NotificationAttempt)
                .where(NotificationAttempt.incident_number == number, NotificationAttempt.status == "sending")
                .values(status="lost", finished_at=now, error=f"never answered: the workflow was {status}")
            )
            session.execute(delete(IncidentGroup).where(IncidentGroup.incident_number == number))
        return True


async def _workflow_exists(client: Client, number: int) -> bool:
    try:
        await client.get_workflow_handle(workflow_id(number)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _newest_first(client: Client, workflow_id: str, run_id: str) -> AsyncIterator[HistoryEvent]:
    """The run's history events, newest first (what we look for is near the end of a long history)."""
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
        maximum_page_size=100,
    )
    while True:
        page = await client.workflow_service.get_workflow_execution_history_reverse(request)
        for event in page.history.events:
            yield event
        if not page.next_page_token:
            return
        request.next_page_token = page.next_page_token


async def _how_it_ended(client: Client, workflow_id: str, run_id: str) -> str:
    """` by <identity>: <reason>` from the run's history, as far as Temporal recorded it."""
    async for event in _newest_first(client, workflow_id, run_id):
        if event.HasField("workflow_execution_terminated_event_attributes"):
            attrs = event.workflow_execution_terminated_event_attributes
            return _who_why(attrs.identity, attrs.reason)
        if event.HasField("workflow_execution_cancel_requested_event_attributes"):
            attrs = event.workflow_execution_cancel_requested_event_attributes
            return _who_why(attrs.identity, attrs.cause)
        if event.HasField("workflow_execution_failed_event_attributes"):
            return _who_why("", event.workflow_execution_failed_event_attributes.failure.message)
        if event.HasField("workflow_execution_timed_out_event_attributes"):
            return ""
    return ""


def _who_why(who: str, why: str) -> str:
    return (f" by {who}" if who else "") + (f": {why}" if why else "")
