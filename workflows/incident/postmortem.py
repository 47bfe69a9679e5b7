"""The RCA stage: after a resolve, where the severity requires it, the incident gathers its evidence, drafts
its postmortem, and reminds the people who owe it until it is complete (or an admin waives it); it closes
only then. Prometheus, the renderer or the mail server failing degrades the evidence or a reminder, never the
incident: every failure is a timeline entry.

The activities are addressed by name, so the workflow never imports the plotting and PDF libraries they use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from vigil import search_attributes as sa
    from vigil.contracts import (
        REFUSED_POSTMORTEM,
        REFUSED_TRANSITION,
        Actor,
        ActorKind,
        DraftPostmortemInput,
        EvidenceSummary,
        GatherEvidenceInput,
        IncidentInput,
        IncidentState,
        OpenPostmortemInput,
        PostmortemPlan,
        PostmortemProgress,
        PostmortemState,
        PostmortemStatus,
        RemindPostmortemInput,
        RemindPostmortemResult,
        incident_ref,
    )
    from vigil.escalation import human_duration
    from workflows.incident.jira_link import JiraLink
    from workflows.incident.ladder import InFlight, cause
    from workflows.incident.local import store
    from workflows.incident.options import BACKGROUND, NOTIFY_RETRY, STORE_RETRY, STORE_TIMEOUT
    from workflows.incident.timeline import TIMER, Timeline

# Marks runs with the RCA stage; runs started before it close when the reopen window elapses, as they did.
RCA_PATCH = "rca-stage"
# Marks completions that send the PDF and the action items to Jira; earlier ones only commented.
RCA_JIRA_PATCH = "rca-jira"
P = PostmortemStatus
SYSTEM = Actor(kind=ActorKind.system, name="rca")
# Prometheus queries and chart rendering: minutes at most; a few attempts, then the gap is recorded.
EVIDENCE_TIMEOUT = timedelta(minutes=5)
EVIDENCE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)
REMIND_TIMEOUT = timedelta(seconds=60)


class Postmortem:
    def __init__(
        self, s: IncidentState, inp: IncidentInput, timeline: Timeline, jira: JiraLink, on_change: Callable[[], None]
    ) -> None:
        self.s, self.inp, self.timeline, self.jira, self._changed = s, inp, timeline, jira, on_change
        self._on: bool | None = None  # decided at the first resolve of this run
        self._worker: asyncio.Task[None] | None = None
        self._wanted = self._busy = False
        self._reminders = InFlight()

    # --- what the workflow asks ----------------------------------------------------------------------

    def stage(self) -> bool:
        """This run has the RCA stage (patched in at the first resolve; older runs never had it)."""
        if self._on is None:
            self._on = self.s.postmortem is not None or workflow.patched(RCA_PATCH)
        return self._on

    @property
    def pending(self) -> bool:
        """Required and neither complete nor waived: the incident may not close."""
        pm = self.s.postmortem
        return pm is not None and pm.required and pm.status == P.draft

    def idle(self) -> bool:
        return not (self._wanted or self._busy) and self._reminders.count == 0

    def line(self) -> str | None:
        pm = self.s.postmortem
        if pm is None or not pm.required:
            return None
        text = f"**Postmortem:** {pm.status.value}, {pm.progress.sections_filled}/{pm.progress.sections_total} sections"
        if pm.status == P.draft and pm.next_reminder_at:
            text += f", reminder due {pm.next_reminder_at.isoformat(timespec='seconds')}"
        return text

    # --- the stage -------------------------------------------------------------------------------------

    def resolved(self) -> None:
        """At each resolve: open the postmortem (once) and gather fresh evidence for it, beside the incident,
        so a database or Prometheus outage never holds the reopen window or a page behind it."""
        self._wanted = True
        if self._worker is None:
            self._worker = asyncio.create_task(self._work())

    @property
    def opened(self) -> bool:
        return self.s.postmortem is not None

    async def _work(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self._wanted)
            self._wanted, self._busy = False, True
            try:
                if self.s.postmortem is None:
                    await self._open()
                pm = self.s.postmortem
                assert pm is not None
                if pm.required and self.s.resolved_at is not None and pm.evidence_at != self.s.resolved_at:
                    pm.evidence_at = self.s.resolved_at  # once per resolution, not again after a continue-as-new
                    await self._gather()
            finally:
                self._busy = False

    async def _open(self) -> None:
        plan = await store(
            "open_postmortem",
            OpenPostmortemInput(number=self.s.number, severity=self.s.severity, service=self.s.service,
                                title=self.s.title),
            f"postmortem required for {self.s.severity.value}?", result_type=PostmortemPlan,
        )
        self.s.postmortem = PostmortemState(
            required=plan.required, remind_after_seconds=plan.remind_after_seconds,
            remind_every_seconds=plan.remind_every_seconds, manager_after_reminders=plan.manager_after_reminders,
            url=plan.url,
        )
        if plan.required:
            self.timeline.record("postmortem", SYSTEM, f"Postmortem required ({self.s.severity.value}): {plan.url}")
            workflow.upsert_search_attributes([sa.POSTMORTEM.value_set("awaiting")])
            self.jira.comment(f"Postmortem of {incident_ref(self.s.number)}: {plan.url}")
            self._changed()

    async def remind_until_done(self, changed: Callable[[], bool]) -> None:
        """Remind by email, on durable timers, until the postmortem is complete or waived (or `changed`)."""
        pm = self.s.postmortem
        assert pm is not None and self.s.resolved_at is not None
        while pm.status == P.draft and not changed():
            if pm.next_reminder_at is None:  # the first one N hours after the resolve, then every M hours
                first = pm.reminders_sent == 0
                since = self.s.resolved_at if first else workflow.now()
                delay = pm.remind_after_seconds if first else pm.remind_every_seconds
                pm.next_reminder_at = since + timedelta(seconds=delay)
                self._changed()
            due = pm.next_reminder_at
            try:
                await workflow.wait_condition(
                    lambda: pm.status != P.draft or changed(),
                    timeout=max(due - workflow.now(), timedelta(milliseconds=1)),
                    timeout_summary=f"postmortem reminder {pm.reminders_sent + 1} at {due.isoformat(timespec='seconds')}",
                )
            except asyncio.TimeoutError:
                await self._remind()

    async def done(self, status: PostmortemStatus, actor: Actor, reason: str = "") -> None:
        """Complete or waive; no reminder starts after this, and one in flight has settled when it returns."""
        pm = self.s.postmortem
        assert pm is not None
        pm.status, pm.next_reminder_at = status, None
        if status == P.waived:
            self.timeline.record("postmortem_waived", actor, f"Postmortem waived by {actor.label()}: {reason}")
        else:
            self.timeline.record("postmortem_completed", actor, f"Postmortem completed by {actor.label()}")
        workflow.upsert_search_attributes([sa.POSTMORTEM.value_set(status.value)])
        self.jira.comment(f"Postmortem {status.value} in Vigil by {actor.label()}" + (f": {reason}" if reason else ""))
        if status == P.complete and workflow.patched(RCA_JIRA_PATCH):
            self.jira.postmortem_completed()
        self._reminders.cancel_all()
        await workflow.wait_condition(lambda: self._reminders.count == 0)
        self._changed()

    def refresh(self, actor: Actor) -> None:
        """Gather the evidence again (Prometheus was down, or a query was added) and redraft."""
        pm = self.s.postmortem
        assert pm is not None
        pm.evidence_at = None
        self.timeline.record("evidence_refresh", actor, f"Evidence refresh asked by {actor.label()}")
        self.resolved()

    def require_refreshable(self) -> None:
        pm = self.s.postmortem
        if pm is None or not pm.required or self.s.resolved_at is None:
            raise ApplicationError(
                f"{incident_ref(self.s.number)} has no postmortem evidence to refresh (it is not resolved with a "
                "required postmortem)", self.s.status.value, type=REFUSED_TRANSITION, non_retryable=True,
            )

    def edited(self, progress: PostmortemProgress) -> None:
        if self.s.postmortem is not None:
            self.s.postmortem.progress = progress
            self._changed()

    # --- checks, for update validators -----------------------------------------------------------------

    def require_close_allowed(self) -> None:
        pm = self.s.postmortem
        if self.pending and pm is not None:
            missing = pm.progress.sections_total - pm.progress.sections_filled
            raise ApplicationError(
                f"{incident_ref(self.s.number)} needs its postmortem completed before it closes "
                f"({missing} of {pm.progress.sections_total} sections still empty); an admin may waive it",
                {"postmortem": pm.status.value, "sections_filled": pm.progress.sections_filled,
                 "sections_total": pm.progress.sections_total, "url": pm.url},
                type=REFUSED_POSTMORTEM, non_retryable=True,
            )

    def require_draft(self) -> None:
        pm = self.s.postmortem
        if pm is None or not pm.required or pm.status != P.draft:
            state = "not required" if pm is None or not pm.required else pm.status.value
            raise ApplicationError(
                f"{incident_ref(self.s.number)} has no postmortem to complete or waive ({state})", state,
                type=REFUSED_TRANSITION, non_retryable=True,
            )

    # --- activities --------------------------------------------------------------------------------------

    async def _gather(self) -> None:
        """Evidence for this resolution (Prometheus ranges, charts), then the draft that shows it."""
        assert self.s.resolved_at is not None
        try:
            summary = await workflow.execute_activity(
                "gather_evidence",
                GatherEvidenceInput(number=self.s.number, service=self.s.service, started_at=self.s.created_at,
                                    acknowledged_at=self.s.acknowledged_at, resolved_at=self.s.resolved_at),
                result_type=EvidenceSummary, start_to_close_timeout=EVIDENCE_TIMEOUT, retry_policy=EVIDENCE_RETRY,
                priority=BACKGROUND,
                summary=f"gather evidence: Prometheus for {self.s.service} and the alerts' expressions, charts",
            )
        except ActivityError as err:
            self.timeline.record("evidence_gap", SYSTEM, f"Evidence not gathered: {cause(err)}")
        else:
            for gap in summary.gaps:
                self.timeline.record("evidence_gap", SYSTEM, gap)
            self.timeline.record("evidence", SYSTEM, f"Evidence gathered: {summary.series} series, "
                                 f"{len(summary.charts)} chart(s)")
        progress = await workflow.execute_activity(
            "draft_postmortem", DraftPostmortemInput(number=self.s.number), result_type=PostmortemProgress,
            start_to_close_timeout=EVIDENCE_TIMEOUT, retry_policy=STORE_RETRY, priority=BACKGROUND,
            summary="draft the postmortem",
        )
        self.edited(progress)

    async def _remind(self) -> None:
        pm = self.s.postmortem
        assert pm is not None
        # Checked right before: once completion is accepted, no reminder starts.
        if pm.status != P.draft:
            return
        n = pm.reminders_sent + 1
        to_manager = bool(pm.manager_after_reminders) and n > pm.manager_after_reminders
        handle = workflow.start_activity(
            "remind_postmortem",
            RemindPostmortemInput(number=self.s.number, title=self.s.title, reminder=n, to_manager=to_manager,
                                  assignee=self.s.assignee, acknowledged_by=self.s.acknowledged_by, url=pm.url),
            result_type=RemindPostmortemResult, start_to_close_timeout=REMIND_TIMEOUT, retry_policy=NOTIFY_RETRY,
            # Completion waits for this to settle: if the activity has not started it never will.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            priority=BACKGROUND, summary=f"postmortem reminder {n}" + (" (and the manager)" if to_manager else ""),
        )
        self._reminders.add(handle)
        try:
            result = await handle
        except (ActivityError, asyncio.CancelledError) as err:
            if pm.status != P.draft:
                self.timeline.record("postmortem_reminder", TIMER, f"Postmortem reminder {n} stopped: {pm.status.value}")
                return
            result = RemindPostmortemResult(status="failed", error=cause(err))
        finally:
            self._reminders.discard(handle)
        pm.reminders_sent = n
        pm.next_reminder_at = None  # the next one is due `remind_every` from now
        who = ", ".join(result.recipients) or "nobody"
        detail = f": {result.error}" if result.error else ""
        every = human_duration(timedelta(seconds=pm.remind_every_seconds))
        self.timeline.record("postmortem_reminder", TIMER,
                             f"Postmortem reminder {n} {result.status} to {who}{detail}; next in {every}")
