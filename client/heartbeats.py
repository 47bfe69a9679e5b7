"""Heartbeat monitors in Temporal: start, check in, reconfigure and stop `vigil-heartbeat-<id>`, by name."""

from __future__ import annotations

from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.connection import ClientGetter, bounded
from vigil.contracts import (
    HEARTBEAT_CHECK_IN,
    HEARTBEAT_CONFIGURE,
    HEARTBEAT_STATE,
    HEARTBEAT_WORKFLOW,
    HeartbeatCheckIn,
    HeartbeatConfig,
    HeartbeatInput,
    HeartbeatState,
    heartbeat_workflow_id,
)
from vigil.settings import Settings

# A deleted monitor's workflow completes; any other ending (terminated or failed by hand) may be restarted by
# the next check-in or change, from what the database says, so a monitor is never silently dead.
REUSE = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY


class HeartbeatGone(Exception):
    """The monitor's workflow completed: the monitor was deleted."""


class HeartbeatRefused(Exception):
    """The workflow refused the change (its validator)."""


def _summary(c: HeartbeatConfig) -> str:
    return f"Heartbeat {c.name} ({c.service}): every {c.interval_seconds}s + {c.grace_seconds}s grace"


class HeartbeatClient:
    def __init__(self, settings: Settings, client: ClientGetter) -> None:
        self.settings = settings
        self.client = client

    def _start_options(self, inp: HeartbeatInput) -> dict:
        return {
            "id": heartbeat_workflow_id(inp.monitor_id), "task_queue": self.settings.temporal.task_queue,
            "id_reuse_policy": REUSE, "static_summary": _summary(inp.config),
        }

    async def start(self, inp: HeartbeatInput) -> None:
        """Start a new monitor's timer (needs Temporal, not a worker)."""
        client = await self.client()
        await client.start_workflow(HEARTBEAT_WORKFLOW, inp, **self._start_options(inp))

    async def check_in(self, inp: HeartbeatInput) -> None:
        """One signal. Signal-with-start: a workflow ended by hand comes back from `inp` (the database's view)."""
        client = await self.client()
        try:
            await client.start_workflow(
                HEARTBEAT_WORKFLOW, inp, start_signal=HEARTBEAT_CHECK_IN, start_signal_args=[HeartbeatCheckIn()],
                **self._start_options(inp),
            )
        except WorkflowAlreadyStartedError:
            raise HeartbeatGone(heartbeat_workflow_id(inp.monitor_id)) from None

    async def configure(self, inp: HeartbeatInput) -> HeartbeatState:
        """The new settings, as an update to the running timer (so its last check-in counts); needs a worker."""
        client = await self.client()
        start = WithStartWorkflowOperation(
            HEARTBEAT_WORKFLOW, inp, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, **self._start_options(inp)
        )
        try:
            return await bounded(
                client.execute_update_with_start_workflow(
                    HEARTBEAT_CONFIGURE, inp.config, start_workflow_operation=start, result_type=HeartbeatState
                ),
                self.settings.temporal.update_timeout_seconds,
            )
        except WorkflowAlreadyStartedError:
            raise HeartbeatGone(heartbeat_workflow_id(inp.monitor_id)) from None
        except WorkflowUpdateFailedError as err:
            raise HeartbeatRefused(str(err.cause or err)) from err

    async def stop(self, monitor_id: int) -> None:
        """Cancel the timer: the workflow resolves a firing alert and completes. A missing workflow is fine."""
        client = await self.client()
        try:
            await client.get_workflow_handle(heartbeat_workflow_id(monitor_id)).cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def state(self, monitor_id: int) -> HeartbeatState:
        """The timer's live state (query; needs a worker)."""
        client = await self.client()
        handle = client.get_workflow_handle(heartbeat_workflow_id(monitor_id))
        return await bounded(
            handle.query(HEARTBEAT_STATE, result_type=HeartbeatState), self.settings.temporal.update_timeout_seconds
        )
