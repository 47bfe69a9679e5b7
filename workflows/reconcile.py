"""The reconciler: redeliver the outbox, find incidents whose workflow ended outside Vigil, close lost page
attempts. ReconcilerWorkflow runs it continuously (one long-lived workflow); OutboxReconcileWorkflow is one pass,
for running by hand (`temporal workflow start --type OutboxReconcileWorkflow ...`) and for deployments whose
Temporal Schedule still starts it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import incident_ref
    from activities.lifecycle import LifecycleActivities
    from activities.reconcile import ReconcileActivities, ReconcilerActivities
    from vigil.contracts import EndedCheckInput, ReconcileInput, ReconcileResult, ReconcilerInput

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
            + (f", workflows ended outside Vigil: {', '.join(incident_ref(n) for n in ended)}" if ended else "")
            + (f", notification attempts closed as lost: {lost}" if lost else "")
        )
        if failed is not None:
            raise failed
        return result


@workflow.defn
class ReconcilerWorkflow:
    """The one long-lived reconciler (`vigil-reconciler-<task queue>`), started by every worker if missing.

    Its passes run inside long heartbeating activities, so it adds one entry to the workflow list, not one
    run every few seconds; a worker that dies mid-activity is replaced within the heartbeat timeout.
    """

    @workflow.run
    async def run(self, inp: ReconcilerInput) -> None:
        while not workflow.info().is_continue_as_new_suggested():
            done = await workflow.execute_activity_method(
                ReconcilerActivities.reconcile_continuously,
                inp,
                start_to_close_timeout=timedelta(seconds=inp.activity_seconds) + timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                # Unlimited: the reconciler must outlive any outage; capped so it is back soon after one.
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
                summary=f"reconcile every {inp.every_seconds:g}s: outbox, ended workflows, lost attempts",
            )
            workflow.set_current_details(
                f"last {inp.activity_seconds / 60:g} min: {done.passes} passes ({done.failed_passes} failed), "
                f"{done.delivered} alerts redelivered, {done.rerouted} rerouted, {done.released} released from "
                f"silences, {done.dead_lettered} dead-lettered, {done.ended} workflows found ended, "
                f"{done.lost} attempts closed as lost"
            )
        workflow.continue_as_new(inp)
