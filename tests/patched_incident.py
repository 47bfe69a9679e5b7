"""Version 2 of the incident workflow for the versioning tests: a step added under `workflow.patched`.

Its own module, importing only workflow code, because the workflow sandbox re-imports the module a workflow is
defined in."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import INCIDENT_WORKFLOW, IncidentInput, IncidentResult
    from workflows.incident import IncidentWorkflow

ADDED_STEP = "v2-built-by"


@workflow.defn(name=INCIDENT_WORKFLOW)
class AddsAStep(IncidentWorkflow):
    """New incidents record which build opened them; running ones, replaying, keep their old path."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentResult:
        if workflow.patched(ADDED_STEP):
            workflow.upsert_memo({"built_by": "v2"})
        return await super().run(inp)
