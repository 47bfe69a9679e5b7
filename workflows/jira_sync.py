"""JiraSyncWorkflow (`INC-<n>-jira`): applies an incident's changes to its Jira issue, in order, beside the pager.

A child of IncidentWorkflow that outlives it (parent close policy ABANDON), so a Jira outage never delays a
page or a transition: changes queue here, each retried with capped backoff until Jira answers, and are
applied in the order they happened. A change Jira refuses for good (400/403/404) is logged and skipped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.jira import REJECTED, JiraActivities
    from vigil import search_attributes as sa
    from vigil.contracts import (
        JIRA_LINKED,
        JIRA_SYNC_WORKFLOW,
        JiraCallInput,
        JiraOp,
        JiraOpKind,
        JiraSyncInput,
        workflow_id,
    )

JIRA_TIMEOUT = timedelta(seconds=60)
# Jira down: keep trying, at most every 5 minutes, until it answers; the incident goes on meanwhile.
JIRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[REJECTED],
)


@workflow.defn(name=JIRA_SYNC_WORKFLOW)
class JiraSyncWorkflow:
    @workflow.init
    def __init__(self, inp: JiraSyncInput) -> None:
        self.inp = inp
        self.ops: list[JiraOp] = list(inp.ops)
        self.key = inp.key
        self.closed = inp.closed

    @workflow.signal
    def enqueue(self, op: JiraOp) -> None:
        self.ops.append(op)

    @workflow.query
    def pending(self) -> list[JiraOp]:
        return self.ops

    @workflow.run
    async def run(self, inp: JiraSyncInput) -> str | None:
        while True:
            await workflow.wait_condition(lambda: bool(self.ops) or self.closed)
            if not self.ops:
                return self.key  # closed, and every change applied
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"ops": self.ops, "key": self.key, "closed": self.closed}))
            op = self.ops[0]
            if op.kind == JiraOpKind.close:
                self.closed = True
            else:
                await self._apply(op)
            self.ops.pop(0)

    async def _apply(self, op: JiraOp) -> None:
        what = op.kind.value if op.kind != JiraOpKind.transition else f"transition to {op.status.value}"  # type: ignore[union-attr]
        try:
            result = await workflow.execute_activity_method(
                JiraActivities.apply_jira_op,
                JiraCallInput(project_key=self.inp.project_key, issue=self.inp.issue, key=self.key, op=op),
                start_to_close_timeout=JIRA_TIMEOUT,
                retry_policy=JIRA_RETRY,
                summary=f"jira {what}" + (f" {self.key}" if self.key else ""),
            )
        except ActivityError as err:
            workflow.logger.warning("INC-%s: Jira refused %s: %s", self.inp.issue.number, what, err.cause)
            return
        if op.kind == JiraOpKind.create and result.key and self.key is None:
            self.key = result.key
            workflow.upsert_search_attributes([sa.JIRA_KEY.value_set(self.key)])
            parent = workflow.get_external_workflow_handle(workflow_id(self.inp.issue.number))
            try:
                await parent.signal(JIRA_LINKED, self.key)
            except FailureError as err:  # the incident has completed; its row holds the key anyway
                workflow.logger.info("INC-%s: could not tell the incident its Jira key: %s", self.inp.issue.number, err)
