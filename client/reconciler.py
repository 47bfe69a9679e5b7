"""Start the long-lived reconciler workflow, once per task queue, from every worker (idempotent)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from vigil.contracts import ReconcilerInput
from vigil.logging import get_logger
from vigil.settings import Settings

log = get_logger(__name__)
RECONCILER_WORKFLOW = "ReconcilerWorkflow"


def reconciler_id(settings: Settings) -> str:
    return f"vigil-reconciler-{settings.temporal.task_queue}"


def legacy_schedule_id(settings: Settings) -> str:
    """The Temporal Schedule earlier versions ran the reconciler from: a workflow run every few seconds."""
    return f"vigil-outbox-reconciler-{settings.temporal.task_queue}"


async def ensure_reconciler(client: Client, settings: Settings) -> str:
    """Start the reconciler if it is not running (every worker asks; one runs), and retire the old Schedule."""
    try:
        await client.get_schedule_handle(legacy_schedule_id(settings)).delete()
        log.info("retired the reconciler's Temporal Schedule", schedule_id=legacy_schedule_id(settings))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    workflow_id = reconciler_id(settings)
    await client.start_workflow(
        RECONCILER_WORKFLOW,
        ReconcilerInput(every_seconds=settings.worker.outbox_reconcile_seconds),
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
        # Already running: keep it. Ended (cancelled or terminated by hand): a new one starts.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Vigil reconciler: outbox redelivery, ended workflows, lost page attempts",
    )
    log.info("reconciler running", workflow_id=workflow_id, every_s=settings.worker.outbox_reconcile_seconds)
    return workflow_id
