"""The incident's timeline: every change recorded in order, with who caused it, and projected to the database
beside the incident (a database outage delays the rows, never a page)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.projection import ProjectionActivities
    from vigil.contracts import Actor, ActorKind, IncidentProjection, IncidentState, TimelineEntry
    from workflows.incident.local import store

SOURCE = Actor(kind=ActorKind.source, name="alert source")
TIMER = Actor(kind=ActorKind.timer, name="timer")
PROVIDER = Actor(kind=ActorKind.system, name="provider")
JIRA = Actor(kind=ActorKind.system, name="jira")

# A workflow task that starts pages completes without waiting for the projection: its entries go to the
# database in the next task (the pages' own results bring one). Runs before this patch projected in that task.
PAGES_FIRST_PATCH = "pages-before-projection"


class Timeline:
    def __init__(self, s: IncidentState) -> None:
        self.s = s
        self._pending: list[TimelineEntry] = []
        self._projecting = False
        self._projector: asyncio.Task[None] | None = None
        self._held_in: datetime | None = None  # workflow.now() of the task whose projection waits for the next one
        # The row's status and severity as last projected (a new incident's row is written so by the API, and a
        # continued run's by the drain before it): a change of either is never held.
        self._row = (s.status, s.severity)
        self._draining = False

    def record(self, kind: str, actor: Actor, message: str) -> None:
        self.s.timeline_seq += 1
        self._pending.append(
            TimelineEntry(seq=self.s.timeline_seq, at=workflow.now(), kind=kind, actor=actor.label(), message=message)
        )

    @property
    def projected(self) -> bool:
        """Every entry recorded so far is handed to the projection."""
        return not self._pending

    def hold_for_pages(self) -> None:
        """Pages are starting in this workflow task: let it complete without the projection.

        A local activity keeps its workflow task open until it returns, and Temporal sends the task's commands,
        the page activities and the next rung's timer, only when it completes. Under load that write took a
        second, which every page then waited for, and the next rung's timer started that much after the due
        time the workflow had stated. The held entries are projected in the next task, which the pages bring
        when they finish (or fail, or are cancelled). A task that changes the incident's status or severity (a
        re-trigger) still projects at once: lists and filters read the row."""
        if workflow.patched(PAGES_FIRST_PATCH):
            self._held_in = workflow.now()

    def _may_project(self) -> bool:
        if not self._pending:
            return False
        return self._draining or self._held_in != workflow.now() or (self.s.status, self.s.severity) != self._row

    def start_projecting(self) -> None:
        self._projector = asyncio.create_task(self._project_forever())

    async def drain(self) -> None:
        """Wait until every entry is projected (and surface a projector bug, if any)."""
        projector = self._projector
        assert projector is not None
        self._draining = True  # closing or continuing as new: nothing waits for a later task
        await workflow.wait_condition(lambda: projector.done() or not (self._pending or self._projecting))
        if projector.done():
            await projector

    async def _project_forever(self) -> None:
        while True:
            await workflow.wait_condition(self._may_project)
            self._projecting = True
            try:
                await self._flush()
            finally:
                self._projecting = False

    async def _flush(self) -> None:
        """Project the incident row and new timeline entries to the DB (idempotent by seq)."""
        entries, self._pending = self._pending, []
        s = self.s
        self._row = (s.status, s.severity)
        await store(
            ProjectionActivities.project_incident,
            IncidentProjection(
                number=s.number,
                status=s.status,
                severity=s.severity,
                service=s.service,
                title=s.title,
                acknowledged_at=s.acknowledged_at,
                acknowledged_by=s.acknowledged_by,
                resolved_at=s.resolved_at,
                resolved_by=s.resolved_by,
                resolution=s.resolution,
                closed_at=s.closed_at,
                reopen_count=s.reopen_count,
                timeline=entries,
            ),
            f"project {s.status.value}: " + ", ".join(e.kind for e in entries)[:80],
        )
