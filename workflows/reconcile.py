"""OutboxReconcileWorkflow: started by a Temporal Schedule every few seconds: redeliver the outbox, then look
for incidents whose workflow ended outside Vigil. Visible in the UI."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities
    from activities.reconcile import ReconcileActivities
    from vigil.contracts import EndedCheckInput, ReconcileInput, ReconcileResult

# Marks runs that also look for incidents whose workflow ended outside Vigil.
ENDED_CHECK_PATCH = "ended-workflow-check"


@workflow.defn
class OutboxReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileResult:
        failed: ActivityError | None = None
        try:
            result = await workflow.execute_activity_method(
                ReconcileActivities.redeliver_outbox,
                inp,
                start_to_close_timeout=timedelta(minutes=5),
                # The next scheduled run retries anyway; don't pile up attempts.
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="redeliver stored, undelivered alerts",
            )
        except ActivityError as err:
            if not workflow.patched(ENDED_CHECK_PATCH):
                raise
            # The ended-workflow check runs anyway; the run still fails afterwards, visibly.
            failed, result = err, ReconcileResult()
        ended: list[int] = []
        lost = 0
        if workflow.patched(ENDED_CHECK_PATCH):
            check = await workflow.execute_activity_method(
                LifecycleActivities.check_ended_incidents,
                EndedCheckInput(),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="find incidents whose workflow ended outside Vigil",
            )
            ended = check.ended
            lost = await workflow.execute_activity_method(
                LifecycleActivities.close_lost_attempts,
                EndedCheckInput(),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="close notification attempts lost mid-send",
            )
        workflow.set_current_details(
            f"incidents: {result.incidents}, delivered: {result.delivered}, rerouted: {result.rerouted}, "
            f"released from silences: {result.released}"
            + (f", workflows ended outside Vigil: {', '.join(f'INC-{n}' for n in ended)}" if ended else "")
            + (f", notification attempts closed as lost: {lost}" if lost else "")
        )
        if failed is not None:
            raise failed
        return result
