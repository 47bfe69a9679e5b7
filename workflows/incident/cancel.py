"""A cancel request from Temporal (the UI's "Request Cancellation", `temporal workflow cancel`): recorded with
who asked, then the incident is resolved and closed. Why resolve rather than refuse and keep paging:
docs/runbook.md."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities
    from vigil.contracts import Actor, ActorKind, CancelRequest, CancelRequestInput, IncidentResult, IncidentState
    from vigil.state_machine import Transition, can
    from workflows.incident.ladder import Ladder
    from workflows.incident.options import STORE_TIMEOUT
    from workflows.incident.timeline import Timeline
    from workflows.incident.transitions import Transitions


class CancelRequests:
    def __init__(self, s: IncidentState, timeline: Timeline, changes: Transitions, ladder: Ladder) -> None:
        self.s, self.timeline, self.changes, self.ladder = s, timeline, changes, ladder
        self.handling = False  # a continue-as-new waits for it: its resolution belongs in the state handed over

    async def shield(self, life: Coroutine[Any, Any, IncidentResult]) -> IncidentResult:
        """Run the life in a task of its own that Temporal's cancellation never reaches: a cancel request lands
        here, between awaits of the primary task, and becomes an operator action like an update."""
        task = asyncio.create_task(life)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if workflow.cancellation_reason() is None:
                    raise  # not a request from Temporal: an eviction, or a bug to surface
                if task.done():  # it ended (closed, or continued as new) in the same activation
                    return task.result()
                self.handling = True
                try:
                    await self._resolve_and_close()
                finally:
                    self.handling = False

    async def _resolve_and_close(self) -> None:
        """Resolve and close, so the button never leaves a workflow CANCELED with its state unrecorded."""
        s, timeline, changes, ladder = self.s, self.timeline, self.changes, self.ladder
        info = workflow.info()
        try:
            request = await workflow.execute_activity_method(
                LifecycleActivities.cancel_request,
                CancelRequestInput(workflow_id=info.workflow_id, run_id=info.run_id),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="who asked to cancel",
            )
        except ActivityError as err:
            workflow.logger.warning("INC-%s: cancel request identity unavailable: %s", s.number, err)
            request = CancelRequest(reason=workflow.cancellation_reason() or "")
        who = request.identity or "an unknown Temporal client"
        reason = request.reason or workflow.cancellation_reason() or "no reason given"
        actor = Actor(kind=ActorKind.user, name=f"{who} (Temporal cancel)")
        timeline.record("cancel_requested", actor, f"Cancellation requested in Temporal by {who}: {reason}")
        if changes.closed:
            return
        if can(s.status, Transition.resolve):
            changes.resolve(actor, f"Cancelled in Temporal by {who}: {reason}")
            await ladder.stop()
        # No reopen window: whoever cancelled wants the workflow gone; a re-fire opens a new incident.
        changes.close(actor, "Closed: cancelled in Temporal")
