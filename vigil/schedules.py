"""The Temporal Schedule that runs the outbox reconciler; created by the worker if missing."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from vigil.contracts import ReconcileInput
from vigil.logging import get_logger
from vigil.settings import Settings

log = get_logger(__name__)
RECONCILE_WORKFLOW = "OutboxReconcileWorkflow"


def reconcile_schedule_id(settings: Settings) -> str:
    return f"vigil-outbox-reconciler-{settings.temporal.task_queue}"


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> str:
    """Idempotent: every worker calls it at start; the first one creates the schedule."""
    schedule_id = reconcile_schedule_id(settings)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            ReconcileInput(),
            id=f"vigil-outbox-reconcile-{settings.temporal.task_queue}",
            task_queue=settings.temporal.task_queue,
            execution_timeout=timedelta(minutes=10),
            static_summary="Vigil outbox reconciler",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.worker.outbox_reconcile_seconds))]),
        # One reconciler at a time, whatever the number of workers.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("outbox reconciler scheduled", schedule_id=schedule_id, every_s=settings.worker.outbox_reconcile_seconds)
    except ScheduleAlreadyRunningError:
        pass
    return schedule_id
