"""The incident's side of Jira sync: queue each change and hand it to the incident's JiraSyncWorkflow.

The incident never waits on Jira: starting the child and signalling it are single commands, and every Jira
call happens in the child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from vigil import search_attributes as sa
    from vigil.contracts import (
        IncidentInput,
        IncidentState,
        IncidentStatus,
        JiraIssueFields,
        JiraOp,
        JiraOpKind,
        JiraSyncInput,
        incident_ref,
        jira_sync_workflow_id,
    )
    from workflows.incident.details import temporal_url
    from workflows.incident.options import BACKGROUND
    from workflows.incident.timeline import JIRA, Timeline
    from workflows.jira_sync import JiraSyncWorkflow

# Marks runs that may sync to Jira; runs started before it never start a JiraSyncWorkflow.
JIRA_PATCH = "jira-sync"
SYNCED_STATUSES = (IncidentStatus.acknowledged, IncidentStatus.resolved, IncidentStatus.triggered)


class JiraLink:
    def __init__(self, s: IncidentState, inp: IncidentInput, timeline: Timeline, on_change: Callable[[], None]) -> None:
        self.s, self.inp, self.timeline, self._changed = s, inp, timeline, on_change
        self._on = False
        self._queue: list[JiraOp] = []
        self._forwarding = False
        self._child_up = False
        self._forwarder: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Jira sync for this run, if the incident has a Jira target (decided when it opened)."""
        if self.inp.jira is None or not workflow.patched(JIRA_PATCH):
            return
        self._on = True
        # A run continued from another one has handed every change over first: its child exists already.
        self._child_up = self.s.jira_started
        self.maybe_create()
        self._forwarder = asyncio.create_task(self._forward())

    def maybe_create(self) -> None:
        """Create the issue once the incident is severe enough (at start, or when its severity rises)."""
        target = self.inp.jira
        if not self._on or target is None or self.s.jira_started:
            return
        if self.s.severity.rank <= target.min_severity.rank:
            self.s.jira_started = True  # every later change is queued behind the create
            self._queue.insert(0, JiraOp(kind=JiraOpKind.create))
            # The changes so far, so the new issue starts in the incident's current state.
            if self.s.status != IncidentStatus.triggered:
                self._queue.append(JiraOp(kind=JiraOpKind.transition, status=self.s.status))

    def send(self, op: JiraOp) -> None:
        """Queue a change for the issue; nothing is queued for an incident that has no issue."""
        if self._on and self.s.jira_started:
            self._queue.append(op)

    def comment(self, body: str) -> None:
        self.send(JiraOp(kind=JiraOpKind.comment, body=body))

    def assign(self, assignee: str | None) -> None:
        self.send(JiraOp(kind=JiraOpKind.assign, body=assignee))

    def postmortem_completed(self) -> None:
        """The completed postmortem's PDF and its action items (as linked issues) go to the issue, each once."""
        self.send(JiraOp(kind=JiraOpKind.attach_postmortem))
        self.send(JiraOp(kind=JiraOpKind.action_items))

    def transition(self, status: IncidentStatus) -> None:
        if status in SYNCED_STATUSES:
            self.send(JiraOp(kind=JiraOpKind.transition, status=status))
        elif status == IncidentStatus.closed:
            self.send(JiraOp(kind=JiraOpKind.close))

    def idle(self) -> bool:
        return not self._queue and not self._forwarding

    def linked(self, key: str) -> None:
        """The incident's JiraSyncWorkflow created (or found) its issue."""
        if self.s.jira_key == key:
            return
        self.s.jira_key = key
        workflow.upsert_search_attributes([sa.JIRA_KEY.value_set(key)])
        self.timeline.record("jira", JIRA, f"Linked to Jira issue {key}")
        self._changed()

    async def _forward(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._queue))
            ops, self._queue = self._queue, []
            self._forwarding = True
            try:
                await self._hand_over(ops)
            finally:
                self._forwarding = False

    async def _hand_over(self, ops: list[JiraOp]) -> None:
        number = self.s.number
        if not self._child_up:
            target = self.inp.jira
            assert target is not None
            issue = JiraIssueFields(
                number=number, title=self.s.title, severity=self.s.severity, service=self.s.service,
                incident_url=f"{self.inp.public_url}/api/v1/incidents/{incident_ref(number)}",
                temporal_url=temporal_url(self.inp), alerts=self.s.alert_digest(), alert_count=self.s.alert_count,
            )
            try:
                await workflow.start_child_workflow(
                    JiraSyncWorkflow.run,
                    JiraSyncInput(project_key=target.project_key, issue=issue, ops=ops),
                    id=jira_sync_workflow_id(number),
                    parent_close_policy=ParentClosePolicy.ABANDON,  # it finishes the sync after the incident
                    static_summary=f"Jira sync of {incident_ref(number)}",
                    priority=BACKGROUND,  # its workflow tasks and Jira calls queue behind every page
                )
                self._child_up = True
                return
            except WorkflowAlreadyStartedError:
                self._child_up = True  # started by an earlier run: hand the changes over as signals
        child = workflow.get_external_workflow_handle(jira_sync_workflow_id(number))
        for op in ops:
            try:
                await child.signal(JiraSyncWorkflow.enqueue, op)
            except FailureError as err:  # the sync finished already (after `close`): nothing left to sync
                workflow.logger.warning("INC-%s: Jira change %s dropped: %s", number, op.kind.value, err)
