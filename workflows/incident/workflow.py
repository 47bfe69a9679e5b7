"""IncidentWorkflow: owns one incident (`INC-<n>`) from the first alert until it is closed.

The life, top to bottom: the incident opens with its first alerts and freezes its escalation policy; while
triggered, the ladder pages rung after rung until someone acknowledges (or the ladder is exhausted); an
acknowledged incident waits for its resolution, and re-triggers if the policy's ack timeout or a snooze ends
first; a resolved incident stays open for the reopen window, and an alert that fires again in it reopens the
incident and starts a new round of pages. Where the severity requires a postmortem, the evidence is gathered
at the resolve and the incident waits, with reminders, until the postmortem is complete (or waived); then, or
when the window elapses if none is required, the incident closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.projection import ProjectionActivities
    from vigil.contracts import (
        ACKNOWLEDGE, ADD_ALERTS, ADD_NOTE, ASSIGN, CLOSE, COMPLETE_POSTMORTEM, DELIVERY_RECEIPT, INCIDENT_WORKFLOW,
        JIRA_LINKED, POSTMORTEM_EDITED, REFRESH_EVIDENCE, REFUSED_CLOSED, REFUSED_NO_RESOLUTION, REOPEN, RESOLVE,
        SNOOZE, STATE_QUERY,
        WAIVE_POSTMORTEM, AcknowledgeInput, ActorKind, AddAlertsInput, AddAlertsResult, AssignInput,
        CloseInput, IncidentInput, IncidentResult, IncidentState, IncidentStatus, NoteInput, PostmortemDoneInput,
        PostmortemProgress, PostmortemStatus, ReceiptInput, RefreshEvidenceInput, ReleaseGroupInput, ReopenInput,
        ResolveInput, SnoozeInput, TransitionResult, incident_ref,
    )
    from vigil.escalation import human_duration
    from vigil.state_machine import InvalidTransition, Transition, can
    from workflows.incident import details
    from workflows.incident.alerts import Alerts
    from workflows.incident.cancel import CancelRequests
    from workflows.incident.jira_link import JiraLink
    from workflows.incident.ladder import Ladder
    from workflows.incident.postmortem import Postmortem
    from workflows.incident.local import store
    from workflows.incident.timeline import SOURCE, TIMER, Timeline
    from workflows.incident.transitions import Transitions, refused

S = IncidentStatus
# Marks runs that freeze a FrozenPolicy (escalation policies); runs started before it keep the legacy ladder
# (workflows/incident/legacy_ladder.py says when and how this can go).
POLICIES_PATCH = "escalation-policies"
# Marks runs whose life runs in a task of its own, so that a cancel request is handled (runs before it were
# cancelled mid-await and end CANCELED).
CANCEL_PATCH = "cancel-resolves"


@workflow.defn(name=INCIDENT_WORKFLOW)
class IncidentWorkflow:
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.s = inp.state or IncidentState(
            number=inp.number, status=S.triggered, severity=inp.severity, service=inp.service, title=inp.title,
            group_key=inp.group_key, created_at=workflow.now(),
        )
        self.timeline = Timeline(self.s)
        self.ladder = Ladder(self.s, inp, self.timeline, self._show_details)
        self.jira = JiraLink(self.s, inp, self.timeline, self._show_details)
        self.changes = Transitions(self.s, self.timeline, self.ladder, self.jira, self._show_details)
        self.alerts = Alerts(self.s, inp, self.timeline, self.jira, self.changes)
        self.postmortem = Postmortem(self.s, inp, self.timeline, self.jira, self._show_details)
        self.cancels = CancelRequests(self.s, self.timeline, self.changes, self.ladder)

    # --- the life ----------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentResult:
        if inp.state is None:
            self.timeline.record("triggered", SOURCE, f"Incident opened: {self.s.title}")
            if inp.alerts:
                self.alerts.take(inp.alerts)
        if not workflow.patched(CANCEL_PATCH):
            return await self._live()
        return await self.cancels.shield(self._live())  # a cancel request resolves and closes

    async def _live(self) -> IncidentResult:
        """Freeze the policy, then page and wait, status after status, until closed."""
        self.timeline.start_projecting()  # beside the incident: a database outage delays rows, not pages
        self.jira.start()  # beside the pager too: the incident never waits on Jira
        if self.s.policy is None and self.s.plan is None:
            if self.inp.plan is not None:  # frozen by the API: page without an activity first
                self.ladder.frozen(self.inp.plan)
            else:
                await self.ladder.freeze_policy(workflow.patched(POLICIES_PATCH))
            self.changes.ack_timeout_after_freeze()  # an ack accepted while the policy was being frozen
        while self.s.status != S.closed:
            self._show_details()
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
            await self._wait_in(self.s.status)
        self._show_details()
        await self._release_group()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await workflow.wait_condition(self.postmortem.idle)
        await self.timeline.drain()
        await workflow.wait_condition(self.jira.idle)  # the last changes (and `close`) are handed over
        return IncidentResult(number=self.s.number, status=self.s.status)

    async def _wait_in(self, status: IncidentStatus) -> None:
        """Wait until the status changes (or Temporal suggests continue-as-new)."""
        changed = lambda: self.s.status != status or workflow.info().is_continue_as_new_suggested()  # noqa: E731
        if status == S.triggered:  # page until acknowledged (or resolved)
            ladder = self.ladder.run_if_due()
            await self._wait_for_change(changed, lambda: ladder is not None and ladder.done())
            if ladder is not None and ladder.done():
                await self.ladder.finished(ladder)
        elif status == S.acknowledged:  # wait for the resolution
            await self._wait_for_change(changed)
        elif status == S.resolved:  # the reopen window, the postmortem where one is required, then close
            await self._after_resolve(changed)

    async def _after_resolve(self, changed: Callable[[], bool]) -> None:
        assert self.s.resolved_at is not None
        rca = self.postmortem.stage()
        if rca:
            self.postmortem.resolved()  # required? then evidence and a draft, beside the window
        window = timedelta(seconds=self.inp.reopen_window_seconds)
        remaining = self.s.resolved_at + window - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    changed, timeout=remaining, timeout_summary=f"reopen window {human_duration(window)}"
                )
                return  # reopened (an alert fired again), closed by hand, or continue-as-new
            except asyncio.TimeoutError:
                pass
        if rca:
            await workflow.wait_condition(lambda: self.postmortem.opened or changed())
            if self.postmortem.pending and not changed():
                # The window is over: the group's next alert opens a new incident while this one waits.
                await self._release_group()
                await self.postmortem.remind_until_done(changed)
            if changed():
                return
        pm = self.s.postmortem
        done = f"postmortem {pm.status.value}" if pm is not None and pm.required else "reopen window elapsed"
        self.changes.close(TIMER, f"Closed: {done}")

    async def _wait_for_change(self, changed: Callable[[], bool], extra: Callable[[], bool] = lambda: False) -> None:
        """Wait for `changed`, or until a held resolution falls due (then auto-resolve), or, when acknowledged,
        until the ack times out or a snooze ends (then re-trigger)."""
        due = self.s.resolve_due_at
        retrigger = self.s.retrigger_at if self.s.status == S.acknowledged else None
        moved = lambda: self.s.resolve_due_at != due or (  # noqa: E731
            self.s.status == S.acknowledged and self.s.retrigger_at != retrigger
        )
        if due is None and retrigger is None:
            await workflow.wait_condition(lambda: changed() or extra() or moved())
            return
        if retrigger is not None and (due is None or retrigger < due):
            at, summary = retrigger, f"re-trigger at {retrigger.isoformat(timespec='seconds')} unless resolved"
        else:
            assert due is not None
            at, summary = due, f"hold resolution until {due.isoformat(timespec='seconds')}"
        try:
            await workflow.wait_condition(
                lambda: changed() or extra() or moved(),
                timeout=max(at - workflow.now(), timedelta(milliseconds=1)), timeout_summary=summary,
            )
        except asyncio.TimeoutError:
            if at == retrigger:
                self.changes.retrigger()
            elif self.alerts.all_resolved_at_source() and can(self.s.status, Transition.resolve):
                hold = human_duration(timedelta(seconds=self.inp.hold_resolution_seconds))
                self.changes.auto_resolve(f"Auto-resolved: all {self.s.alert_count} alert(s) stayed resolved for {hold}")

    # --- messages, in the order of the life ------------------------------------------------------------

    @workflow.update(name=ADD_ALERTS)
    def add_alerts(self, inp: AddAlertsInput) -> AddAlertsResult:
        """New or changed alerts of the group: a re-fire reopens a resolved incident, or keeps a held one open."""
        return self.alerts.take(inp.alerts)

    @add_alerts.validator
    def _validate_add_alerts(self, inp: AddAlertsInput) -> None:
        self.changes.refuse_if_closed(REFUSED_CLOSED)
        if self.postmortem.pending and self._window_over():  # the alert belongs to the group's next incident
            raise ApplicationError(f"{incident_ref(self.s.number)} awaits its postmortem", type=REFUSED_CLOSED)

    @workflow.signal(name=DELIVERY_RECEIPT)
    def delivery_receipt(self, inp: ReceiptInput) -> None:
        """A provider's delivery receipt (deduplicated by event id): a failed page escalates at once."""
        self.ladder.receipt(inp)

    @workflow.update(name=ACKNOWLEDGE)
    async def acknowledge(self, inp: AcknowledgeInput) -> TransitionResult:
        """Stops the ladder: every page in flight is cancelled and settled before this returns."""
        previous = self.s.status
        self.changes.acknowledge(inp.actor, inp.note)
        await self.ladder.stop()
        return self._result(previous)

    @acknowledge.validator
    def _validate_acknowledge(self, inp: AcknowledgeInput) -> None:
        self.changes.require(Transition.acknowledge)

    @workflow.update(name=SNOOZE)
    def snooze(self, inp: SnoozeInput) -> TransitionResult:
        """Keep an acknowledged incident quiet for a while; it re-triggers when the snooze ends."""
        self.changes.snooze(inp.actor, timedelta(seconds=inp.seconds), inp.note)
        return self._result(self.s.status)

    @snooze.validator
    def _validate_snooze(self, inp: SnoozeInput) -> None:
        self.changes.require_snoozable()

    @workflow.update(name=ASSIGN)
    def assign(self, inp: AssignInput) -> TransitionResult:
        """Who owns the incident; set in Vigil it is mapped to the Jira issue's assignee by email."""
        self.s.assignee = inp.assignee
        if inp.actor.kind != ActorKind.jira:
            self.jira.assign(inp.assignee)
        self.timeline.record("assigned", inp.actor, f"Assigned to {inp.assignee}" if inp.assignee else "Unassigned")
        self._show_details()
        return self._result(self.s.status)

    @assign.validator
    def _validate_assign(self, inp: AssignInput) -> None:
        self.changes.refuse_if_closed()

    @workflow.update(name=ADD_NOTE)
    def add_note(self, inp: NoteInput) -> TransitionResult:
        """A note on the incident's timeline; a note written in Vigil becomes a Jira comment."""
        self.timeline.record("note", inp.actor, inp.body)
        if inp.actor.kind != ActorKind.jira:
            self.jira.comment(f"Note from {inp.actor.label()} in Vigil: {inp.body}")
        return self._result(self.s.status)

    @add_note.validator
    def _validate_note(self, inp: NoteInput) -> None:
        self.changes.refuse_if_closed()

    @workflow.signal(name=JIRA_LINKED)
    def jira_linked(self, key: str) -> None:
        """The incident's JiraSyncWorkflow created (or found) its issue."""
        self.jira.linked(key)

    @workflow.update(name=RESOLVE)
    async def resolve(self, inp: ResolveInput) -> TransitionResult:
        previous = self.s.status
        try:
            self.changes.resolve(inp.actor, inp.resolution.strip())
        except InvalidTransition as err:
            raise refused(err) from None
        await self.ladder.stop()
        return self._result(previous)

    @resolve.validator
    def _validate_resolve(self, inp: ResolveInput) -> None:
        if not inp.resolution.strip():
            raise ApplicationError("a resolution note is required", type=REFUSED_NO_RESOLUTION)
        self.changes.require(Transition.resolve)

    @workflow.update(name=REOPEN)
    def reopen(self, inp: ReopenInput) -> TransitionResult:
        """A person reopens a resolved incident (from Jira): back to triggered, and the ladder starts again."""
        self.changes.reopen(inp.actor, f"Reopened by {inp.actor.label()}" + (f": {inp.note}" if inp.note else ""))
        return self._result(S.resolved)

    @reopen.validator
    def _validate_reopen(self, inp: ReopenInput) -> None:
        self.changes.require_reopenable()

    @workflow.signal(name=POSTMORTEM_EDITED)
    def postmortem_edited(self, progress: PostmortemProgress) -> None:
        """A responder edited the postmortem (the document is in the database; this is how far it is)."""
        self.postmortem.edited(progress)

    @workflow.update(name=REFRESH_EVIDENCE)
    def refresh_evidence(self, inp: RefreshEvidenceInput) -> TransitionResult:
        """Gather the postmortem's evidence again, beside the incident (e.g. Prometheus was down at the resolve)."""
        self.postmortem.refresh(inp.actor)
        return self._result(self.s.status)

    @refresh_evidence.validator
    def _validate_refresh(self, inp: RefreshEvidenceInput) -> None:
        self.changes.refuse_if_closed()
        self.postmortem.require_refreshable()

    @workflow.update(name=COMPLETE_POSTMORTEM)
    async def complete_postmortem(self, inp: PostmortemDoneInput) -> TransitionResult:
        """No reminder starts after this returns; the incident closes once the reopen window is over."""
        await self.postmortem.done(PostmortemStatus.complete, inp.actor)
        return self._result(self.s.status)

    @complete_postmortem.validator
    def _validate_complete(self, inp: PostmortemDoneInput) -> None:
        self.changes.refuse_if_closed()
        self.postmortem.require_draft()

    @workflow.update(name=WAIVE_POSTMORTEM)
    async def waive_postmortem(self, inp: PostmortemDoneInput) -> TransitionResult:
        """An admin lets the incident close without a postmortem; the reason goes on the timeline."""
        await self.postmortem.done(PostmortemStatus.waived, inp.actor, inp.reason.strip())
        return self._result(self.s.status)

    @waive_postmortem.validator
    def _validate_waive(self, inp: PostmortemDoneInput) -> None:
        self.changes.refuse_if_closed()
        self.postmortem.require_draft()
        if not inp.reason.strip():
            raise ApplicationError("a reason is required to waive a postmortem", type=REFUSED_NO_RESOLUTION)

    @workflow.update(name=CLOSE)
    def close(self, inp: CloseInput) -> TransitionResult:
        """Close a resolved incident now, without waiting out the reopen window."""
        self.changes.close(inp.actor, f"Closed by {inp.actor.label()}" + (f": {inp.note}" if inp.note else ""))
        return self._result(S.resolved)

    @close.validator
    def _validate_close(self, inp: CloseInput) -> None:
        self.changes.require(Transition.close)
        self.postmortem.require_close_allowed()

    @workflow.query(name=STATE_QUERY)
    def state(self) -> IncidentState:
        return self.s

    # --- how the life is carried out ---------------------------------------------------------------------

    async def _continue_as_new(self) -> None:
        """Hand the state to a fresh run once the ladder is between rungs and every message is handled."""
        self.ladder.pausing = True  # the ladder stops at its next wait; its position is in self.s
        # Pages in flight finish in this run, so their outcome is in the state handed over.
        # A cancel request being handled finishes first, or its resolution would miss the state handed over.
        await workflow.wait_condition(
            lambda: self.ladder.idle() and self.ladder.inflight.count == 0 and not self.cancels.handling
            and self.postmortem.idle()
        )
        while True:
            await self.timeline.drain()
            await workflow.wait_condition(workflow.all_handlers_finished)
            await workflow.wait_condition(self.jira.idle)
            if self.timeline.projected:
                break
        workflow.continue_as_new(self.inp.model_copy(update={"state": self.s}))

    def _window_over(self) -> bool:
        """Resolved, and its reopen window has elapsed."""
        at = self.s.resolved_at
        return at is not None and workflow.now() >= at + timedelta(seconds=self.inp.reopen_window_seconds)

    async def _release_group(self) -> None:
        """Free the group key, so the group's next alert opens a new incident (idempotent)."""
        await store(
            ProjectionActivities.release_group, ReleaseGroupInput(number=self.s.number, group_key=self.s.group_key),
            "release group key",
        )

    def _result(self, previous: IncidentStatus) -> TransitionResult:
        """A transition's answer, with the state it left (less its per-alert and per-page records): the API
        answers from it instead of querying the workflow again."""
        return TransitionResult(number=self.s.number, status=self.s.status, previous=previous, state=self.s.summary())

    def _show_details(self) -> None:
        details.show(self.s, self.ladder.next_step_line(), self.postmortem.line())
