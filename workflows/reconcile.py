"""OutboxReconcileWorkflow: started by a Temporal Schedule every few seconds; one activity, visible in the UI."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from vigil.contracts import ReconcileInput, ReconcileResult


@workflow.defn
class OutboxReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileResult:
        result = await workflow.execute_activity_method(
            ReconcileActivities.redeliver_outbox,
            inp,
            start_to_close_timeout=timedelta(minutes=5),
            # The next scheduled run retries anyway; don't pile up attempts.
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="redeliver stored, undelivered alerts",
        )
        workflow.set_current_details(
            f"incidents: {result.incidents}, delivered: {result.delivered}, rerouted: {result.rerouted}, "
            f"released from silences: {result.released}"
        )
        return result
