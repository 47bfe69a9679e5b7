"""The reconciler's activities: redeliver alerts stored but not delivered (the outbox), and, in the
long-lived reconciler, also find incidents whose workflow ended outside Vigil and close lost page attempts."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity

from activities.lifecycle import LifecycleActivities
from vigil.contracts import (
    EndedCheckInput,
    ReconcileInput,
    ReconcileResult,
    ReconcilerInput,
    ReconcilerResult,
)
from vigil.logging import get_logger
from vigil.outbox import Outbox

log = get_logger(__name__)
HEARTBEAT_SECONDS = 5.0


class ReconcileActivities:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    @activity.defn
    async def redeliver_outbox(self, inp: ReconcileInput) -> ReconcileResult:
        """Deliver every stored-but-undelivered alert to its incident, oldest first."""
        result = await self.outbox.redeliver(max_incidents=inp.max_incidents)
        await self.outbox.observe()
        return ReconcileResult(
            incidents=result.incidents, delivered=result.delivered, rerouted=result.rerouted, released=result.released,
            refused=result.refused, dead_lettered=result.dead_lettered, waiting=result.waiting,
        )


class ReconcilerActivities:
    """Passes of the reconciler inside one long, heartbeating activity: a pass every few seconds without a
    workflow run or history events per pass, so Temporal's workflow list shows incidents, not plumbing."""

    def __init__(self, reconcile: ReconcileActivities, lifecycle: LifecycleActivities) -> None:
        self.reconcile = reconcile
        self.lifecycle = lifecycle

    @activity.defn
    async def reconcile_continuously(self, inp: ReconcilerInput) -> ReconcilerResult:
        """Run a pass every `every_seconds` for `activity_seconds`, heartbeating; what the passes did."""
        total = ReconcilerResult()
        deadline = time.monotonic() + inp.activity_seconds
        while True:
            await self._pass(inp, total)
            activity.heartbeat(total.passes)
            if time.monotonic() >= deadline:
                return total
            next_pass = time.monotonic() + inp.every_seconds
            while (left := next_pass - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(activity.wait_for_worker_shutdown(), min(left, HEARTBEAT_SECONDS))
                except asyncio.TimeoutError:
                    activity.heartbeat(total.passes)
                else:  # this worker is stopping: end now, so the next activity runs on a worker that stays
                    return total

    async def _pass(self, inp: ReconcilerInput, total: ReconcilerResult) -> None:
        """One pass; a failing pass is logged and counted, never the end of the reconciler."""
        total.passes += 1
        try:
            result = await self.reconcile.redeliver_outbox(ReconcileInput(max_incidents=inp.max_incidents))
            total.delivered += result.delivered
            total.rerouted += result.rerouted
            total.released += result.released
            total.dead_lettered += result.dead_lettered
        except Exception:  # noqa: BLE001 - a Temporal or database outage: the next pass tries again
            total.failed_passes += 1
            log.exception("reconciler pass: redelivery failed")
        try:
            # The check runs even when redelivery failed: an ended workflow is found without the outbox.
            ended = await self.lifecycle.check_ended_incidents(EndedCheckInput())
            total.ended += len(ended.ended)
            total.lost += await asyncio.to_thread(self.lifecycle.close_lost_attempts, EndedCheckInput())
        except Exception:  # noqa: BLE001 - as above
            total.failed_passes += 1
            log.exception("reconciler pass: ended-workflow check failed")
