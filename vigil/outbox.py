"""What the worker's activities may ask of the alert outbox.

The outbox (client.outbox.AlertOutbox) talks to Temporal, so it sits in the client layer, above the activities;
worker.py builds it and hands it to the activities, which know it only by this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vigil.ingest.store import OutboxCounts


@dataclass
class RedeliveryResult:
    incidents: int = 0
    delivered: int = 0
    rerouted: int = 0
    released: int = 0
    refused: int = 0
    dead_lettered: int = 0
    waiting: int = 0  # their workflow did not answer in time; tried again next run


class Outbox(Protocol):
    async def redeliver(self, *, max_incidents: int = 200) -> RedeliveryResult:
        """Deliver every stored-but-undelivered alert: oldest first, one update per incident."""
        ...

    async def observe(self) -> OutboxCounts:
        """Set the outbox gauges from one count."""
        ...

    async def page_operator(self, *, key: str, summary: str, details: dict[str, str]) -> int | None:
        """Raise a problem of Vigil itself as a critical alert of the built-in `vigil` integration."""
        ...
