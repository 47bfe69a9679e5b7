"""The baselines' trivial workflow: no Vigil code, only what Temporal itself costs.

It lives in its own module (and imports nothing but temporalio) so the worker's sandbox loads it cheaply,
as it would any small workflow module.
"""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class BaselineWorkflow:
    """Collects items and never finishes: one signal = one history append, nothing else."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def append(self, item: str) -> None:
        self.items.append(item)

    @workflow.update
    def add(self, item: str) -> int:
        """For the diagnostic update-with-start figure: what Vigil's start path costs in Temporal alone."""
        self.items.append(item)
        return len(self.items)
