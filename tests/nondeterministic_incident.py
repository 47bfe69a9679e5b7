"""A build of the incident workflow with a deliberately non-deterministic change, for the replay gate's tests.

Its own module, importing only workflow code, because the workflow sandbox re-imports the module a workflow is
defined in."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import INCIDENT_WORKFLOW, IncidentInput, IncidentResult
    from workflows.incident import IncidentWorkflow


@workflow.defn(name=INCIDENT_WORKFLOW)
class PausesFirst(IncidentWorkflow):
    """A timer added at the start without `workflow.patched`: every running incident breaks on it."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentResult:
        await workflow.sleep(1)
        return await super().run(inp)
