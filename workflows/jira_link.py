"""IncidentWorkflow's side of Jira sync: queue each change and hand it to the incident's JiraSyncWorkflow.

A mixin of IncidentWorkflow (it shares `self.s` and `self.inp`). The incident never waits on Jira: starting
the child and signalling it are single commands, and every Jira call happens in the child.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import incident_ref
    from vigil import search_attributes as sa
    from vigil.contracts import (
        JIRA_LINKED,
        Actor,
        ActorKind,
        IncidentStatus,
        JiraIssueFields,
        JiraOp,
        JiraOpKind,
        JiraSyncInput,
    )
    from workflows.jira_sync import JiraSyncWorkflow

if TYPE_CHECKING:
    from vigil.contracts import IncidentInput, IncidentState

# Marks runs that may sync to Jira; runs started before it never start a JiraSyncWorkflow.
JIRA_PATCH = "jira-sync"
JIRA = Actor(kind=ActorKind.system, name="jira")
SYNCED_STATUSES = (IncidentStatus.acknowledged, IncidentStatus.resolved, IncidentStatus.triggered)


def jira_workflow_id(number: int) -> str:
    return f"{incident_ref(number)}-jira"


class JiraLink:
    s: IncidentState
    inp: IncidentInput
    _jira_on: bool
    _jira_queue: list[JiraOp]
    _jira_forwarding: bool
    _jira_child_up: bool

    def _jira_start(self) -> asyncio.Task[None] | None:
        """Jira sync for this run, if the incident has a Jira target (decided when it opened)."""
        if self.inp.jira is None or not workflow.patched(JIRA_PATCH):
            return None
        self._jira_on = True
        # A run continued from another one has handed every change over first: its child exists already.
        self._jira_child_up = self.s.jira_started
        self._jira_maybe_create()
        return asyncio.create_task(self._forward_jira())

    def _jira_maybe_create(self) -> None:
        """Create the issue once the incident is severe enough (at start, or when its severity rises)."""
        target = self.inp.jira
        if not self._jira_on or target is None or self.s.jira_started:
            return
        if self.s.severity.rank <= target.min_severity.rank:
            self.s.jira_started = True  # every later change is queued behind the create
            self._jira_queue.insert(0, JiraOp(kind=JiraOpKind.create))
            # The changes so far, so the new issue starts in the incident's current state.
            if self.s.status != IncidentStatus.triggered:
                self._jira_queue.append(JiraOp(kind=JiraOpKind.transition, status=self.s.status))

    def _jira(self, op: JiraOp) -> None:
        """Queue a change for the issue; nothing is queued for an incident that has no issue."""
        if self._jira_on and self.s.jira_started:
            self._jira_queue.append(op)

    def _jira_transition(self, status: IncidentStatus) -> None:
        if status in SYNCED_STATUSES:
            self._jira(JiraOp(kind=JiraOpKind.transition, status=status))
        elif status == IncidentStatus.closed:
            self._jira(JiraOp(kind=JiraOpKind.close))

    def _jira_idle(self) -> bool:
        return not self._jira_queue and not self._jira_forwarding

    async def _forward_jira(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._jira_queue))
            ops, self._jira_queue = self._jira_queue, []
            self._jira_forwarding = True
            try:
                await self._hand_over(ops)
            finally:
                self._jira_forwarding = False

    async def _hand_over(self, ops: list[JiraOp]) -> None:
        number = self.s.number
        if not self._jira_child_up:
            target = self.inp.jira
            assert target is not None
            issue = JiraIssueFields(
                number=number, title=self.s.title, severity=self.s.severity, service=self.s.service,
                incident_url=f"{self.inp.public_url}/api/v1/incidents/{incident_ref(number)}",
                temporal_url=self._temporal_url(), alerts=self.s.alert_digest(), alert_count=self.s.alert_count,
            )
            try:
                await workflow.start_child_workflow(
                    JiraSyncWorkflow.run,
                    JiraSyncInput(project_key=target.project_key, issue=issue, ops=ops),
                    id=jira_workflow_id(number),
                    parent_close_policy=ParentClosePolicy.ABANDON,  # it finishes the sync after the incident
                    static_summary=f"Jira sync of {incident_ref(number)}",
                )
                self._jira_child_up = True
                return
            except WorkflowAlreadyStartedError:
                self._jira_child_up = True  # started by an earlier run: hand the changes over as signals
        child = workflow.get_external_workflow_handle(jira_workflow_id(number))
        for op in ops:
            try:
                await child.signal(JiraSyncWorkflow.enqueue, op)
            except FailureError as err:  # the sync finished already (after `close`): nothing left to sync
                workflow.logger.warning("INC-%s: Jira change %s dropped: %s", number, op.kind.value, err)

    def _jira_linked(self, key: str) -> None:
        if self.s.jira_key == key:
            return
        self.s.jira_key = key
        workflow.upsert_search_attributes([sa.JIRA_KEY.value_set(key)])
        self._record("jira", JIRA, f"Linked to Jira issue {key}")
        self._show_details()

    # Provided by IncidentWorkflow.
    def _record(self, kind: str, actor: Actor, message: str) -> None: ...
    def _show_details(self) -> None: ...
    def _temporal_url(self) -> str: ...
