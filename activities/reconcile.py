"""The outbox reconciler's activity: redeliver alerts that were stored while Temporal was unreachable."""

from __future__ import annotations

from temporalio import activity

from vigil.contracts import ReconcileInput, ReconcileResult
from vigil.ingest.delivery import Delivery


class ReconcileActivities:
    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @activity.defn
    async def redeliver_outbox(self, inp: ReconcileInput) -> ReconcileResult:
        """Deliver every stored-but-undelivered alert to its incident, oldest first."""
        result = await self.delivery.redeliver_outbox(max_incidents=inp.max_incidents)
        await self.delivery.observe_outbox()
        return ReconcileResult(
            incidents=result.incidents, delivered=result.delivered, rerouted=result.rerouted, released=result.released,
            refused=result.refused, dead_lettered=result.dead_lettered, waiting=result.waiting,
        )
