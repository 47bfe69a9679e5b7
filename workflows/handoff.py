"""A schedule's handoff timer: `vigil-handoff-<schedule id>` sleeps until the schedule next hands off to someone,
then emails the incoming on-call. A change to the schedule (a signal) makes it look again; so does a periodic
recheck, which also covers a change whose signal was lost. The timer lives in Temporal: it survives restarts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.handoff import HandoffActivities
    from vigil.contracts import (
        HANDOFF_RESCHEDULE,
        HANDOFF_WORKFLOW,
        HandoffInput,
        HandoffNotice,
        HandoffPlan,
        HandoffPlanInput,
        HandoffReschedule,
    )

PLAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# An email that keeps failing (SMTP down for hours) must not hold back the next handoff's.
NOTICE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2),
                           maximum_attempts=20)


@workflow.defn(name=HANDOFF_WORKFLOW)
class ScheduleHandoffWorkflow:
    def __init__(self) -> None:
        self._changed = False

    @workflow.run
    async def run(self, inp: HandoffInput) -> None:
        recheck = timedelta(seconds=inp.recheck_seconds)
        for _ in range(inp.wakes_per_run):
            self._changed = False
            plan = await self._plan(inp, recheck)
            if not plan.exists:
                workflow.set_current_details("the schedule was deleted")
                return
            due = plan.at if plan.at is not None and plan.at - workflow.now() <= recheck else None
            if not await self._sleep_until(due or workflow.now() + recheck, due, plan.user_id):
                continue  # woken by a change: plan again
            if due is not None:
                await self._notify(inp.schedule_id, due)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(inp)

    async def _plan(self, inp: HandoffInput, recheck: timedelta) -> HandoffPlan:
        return await workflow.execute_activity_method(
            HandoffActivities.plan_handoff,
            HandoffPlanInput(schedule_id=inp.schedule_id, after=workflow.now(), horizon_seconds=int(recheck.total_seconds())),
            start_to_close_timeout=timedelta(seconds=60), retry_policy=PLAN_RETRY,
            summary=f"when does schedule {inp.schedule_id} hand off next",
        )

    async def _sleep_until(self, wake: datetime, due: datetime | None, user_id: int | None) -> bool:
        """True when `wake` came; False when a change came first."""
        workflow.set_current_details(
            f"next handoff {due:%Y-%m-%d %H:%M:%SZ} to user {user_id}" if due else f"no handoff before {wake:%Y-%m-%d %H:%M:%SZ}"
        )
        left = wake - workflow.now()
        if left <= timedelta(0):
            return True
        try:
            await workflow.wait_condition(
                lambda: self._changed, timeout=left,
                timeout_summary=f"handoff at {due:%Y-%m-%d %H:%M}Z" if due else "look at the schedule again",
            )
        except asyncio.TimeoutError:
            return True
        return False

    async def _notify(self, schedule_id: int, at: datetime) -> None:
        try:
            await workflow.execute_activity_method(
                HandoffActivities.notify_handoff, HandoffNotice(schedule_id=schedule_id, at=at),
                start_to_close_timeout=timedelta(seconds=60), retry_policy=NOTICE_RETRY,
                summary=f"email the incoming on-call of schedule {schedule_id}",
            )
        except ActivityError as err:
            workflow.logger.warning("handoff email not sent: %s", err.cause or err)

    @workflow.signal(name=HANDOFF_RESCHEDULE)
    def reschedule(self, _inp: HandoffReschedule) -> None:
        self._changed = True
