"""IncidentWorkflow: owns one incident (`INC-<n>`) from the first alert until it is closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import incident_ref
    from activities.lifecycle import LifecycleActivities
    from activities.notify import NotifyActivities
    from activities.store import StoreActivities
    from vigil import search_attributes as sa
    from vigil.contracts import (
        ACKNOWLEDGE,
        ADD_ALERTS,
        DELIVERY_RECEIPT,
        INCIDENT_WORKFLOW,
        ADD_NOTE,
        ASSIGN,
        JIRA_LINKED,
        REOPEN,
        AssignInput,
        CancelRequest,
        CancelRequestInput,
        JiraOp,
        JiraOpKind,
        NoteInput,
        ReopenInput,
        SNOOZE,
        AcknowledgeInput,
        Actor,
        ActorKind,
        AddAlertsInput,
        AddAlertsResult,
        MAX_TRACKED_ALERTS,
        Alert,
        alert_key,
        tracked,
        AlertStatus,
        EscalationStep,
        IncidentInput,
        IncidentProjection,
        IncidentResult,
        IncidentState,
        IncidentStatus,
        LoadPolicyInput,
        NotifyInput,
        ReleaseGroupInput,
        ReceiptInput,
        ResolveInput,
        Severity,
        SnoozeInput,
        TimelineEntry,
        TransitionResult,
    )
    from vigil.escalation import human_duration, idempotency_key, mask_target
    from vigil.state_machine import InvalidTransition, Transition, can, next_status
    from workflows.jira_link import JiraLink
    from workflows.ladder import NOTIFY_HEARTBEAT, PolicyLadder

S = IncidentStatus
STORE_TIMEOUT = timedelta(seconds=10)
# DB projections must eventually land; retry forever with a capped backoff rather than fail the incident.
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=4
)
SOURCE = Actor(kind=ActorKind.source, name="alert source")
TIMER = Actor(kind=ActorKind.timer, name="timer")
# Marks runs that freeze a FrozenPolicy (escalation policies); runs started before it keep the fixed ladder.
POLICIES_PATCH = "escalation-policies"
# Marks runs whose life runs in a task of its own, so that a cancel request is handled (runs before it were
# cancelled mid-await and end CANCELED).
CANCEL_PATCH = "cancel-resolves"


def refused(err: InvalidTransition) -> ApplicationError:
    """A business refusal the API turns into 409; `details` carries the current state."""
    return ApplicationError(str(err), err.current.value, type="InvalidTransition", non_retryable=True)


@workflow.defn(name=INCIDENT_WORKFLOW)
class IncidentWorkflow(PolicyLadder, JiraLink):
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.s = inp.state or IncidentState(
            number=inp.number,
            status=S.triggered,
            severity=inp.severity,
            service=inp.service,
            title=inp.title,
            group_key=inp.group_key,
            created_at=workflow.now(),
        )
        self._pending: list[TimelineEntry] = []
        self._notifying = 0
        self._inflight: set[workflow.ActivityHandle] = set()
        self._pages: set[asyncio.Task[None]] = set()
        self._jira_on = False
        self._jira_queue: list[JiraOp] = []
        self._jira_forwarding = False
        self._jira_child_up = False
        self._ladder: asyncio.Task[None] | None = None
        self._projecting = False
        self._closing = False
        self._continuing = False
        self._cancelling = False

    # --- run loop -------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentResult:
        if inp.state is None:
            self._record("triggered", SOURCE, f"Incident opened: {self.s.title}")
            if inp.alerts:
                self._take_alerts(inp.alerts)
        if not workflow.patched(CANCEL_PATCH):
            return await self._live(inp)
        # The incident lives in a task of its own that Temporal's cancellation never reaches: a cancel request
        # lands here, between awaits of the primary task, and becomes an operator action like an update.
        life = asyncio.create_task(self._live(inp))
        while True:
            try:
                return await asyncio.shield(life)
            except asyncio.CancelledError:
                if workflow.cancellation_reason() is None:
                    raise  # not a request from Temporal: an eviction, or a bug to surface
                if life.done():  # it ended (closed, or continued as new) in the same activation
                    return life.result()
                self._cancelling = True
                try:
                    await self._cancel_requested()
                finally:
                    self._cancelling = False

    async def _cancel_requested(self) -> None:
        """A cancel request (the UI's "Request Cancellation", `temporal workflow cancel`): resolve and close."""
        # Recorded with who asked, so the button never leaves a workflow CANCELED with its state unrecorded;
        # why resolve rather than refuse and keep paging: docs/runbook.md.
        info = workflow.info()
        try:
            request = await workflow.execute_activity_method(
                LifecycleActivities.cancel_request,
                CancelRequestInput(workflow_id=info.workflow_id, run_id=info.run_id),
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="who asked to cancel",
            )
        except ActivityError as err:
            workflow.logger.warning("INC-%s: cancel request identity unavailable: %s", self.s.number, err)
            request = CancelRequest(reason=workflow.cancellation_reason() or "")
        who = request.identity or "an unknown Temporal client"
        reason = request.reason or workflow.cancellation_reason() or "no reason given"
        actor = Actor(kind=ActorKind.user, name=f"{who} (Temporal cancel)")
        self._record("cancel_requested", actor, f"Cancellation requested in Temporal by {who}: {reason}")
        if self._closing or self.s.status == S.closed:
            return
        if can(self.s.status, Transition.resolve):
            self._resolve(actor, f"Cancelled in Temporal by {who}: {reason}")
            await self._stop_ladder()
        # No reopen window: whoever cancelled wants the workflow gone; a re-fire opens a new incident.
        self._transition(Transition.close, actor, "Closed: cancelled in Temporal")

    async def _live(self, inp: IncidentInput) -> IncidentResult:
        """The incident's life: freeze the policy, then page and wait, status after status, until closed."""
        # Projection runs beside the incident, never in its way: a database outage delays the rows, not the pages.
        projector = asyncio.create_task(self._project_forever())
        self._jira_task = self._jira_start()  # beside the pager too: the incident never waits on Jira
        if self.s.policy is None and self.s.plan is None:
            policy_input = LoadPolicyInput(service=self.s.service, severity=self.s.severity)
            if workflow.patched(POLICIES_PATCH):
                self.s.plan = await workflow.execute_activity_method(
                    StoreActivities.freeze_escalation_policy,
                    policy_input,
                    start_to_close_timeout=STORE_TIMEOUT,
                    retry_policy=STORE_RETRY,
                    summary="freeze escalation policy",
                )
                self._record("policy", TIMER, f"Escalation policy frozen: {self.s.plan.name}")
            else:
                self.s.policy = await workflow.execute_activity_method(
                    StoreActivities.load_escalation_policy,
                    policy_input,
                    start_to_close_timeout=STORE_TIMEOUT,
                    retry_policy=STORE_RETRY,
                    summary="freeze escalation policy",
                )
        while self.s.status != S.closed:
            self._show_details()
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new(projector)
            await self._wait_in(self.s.status)
        self._show_details()
        await workflow.execute_activity_method(
            StoreActivities.release_group,
            ReleaseGroupInput(number=self.s.number, group_key=self.s.group_key),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary="release group key",
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._drain(projector)
        await workflow.wait_condition(self._jira_idle)  # the last changes (and `close`) are handed over
        return IncidentResult(number=self.s.number, status=self.s.status)

    async def _project_forever(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._pending))
            self._projecting = True
            try:
                await self._flush()
            finally:
                self._projecting = False

    async def _continue_as_new(self, projector: asyncio.Task[None]) -> None:
        """Hand the state to a fresh run once the ladder is between rungs and every message is handled."""
        self._continuing = True  # the ladder stops at its next wait; its position is in self.s
        # Pages in flight finish in this run, so their outcome is in the state handed over.
        # A cancel request being handled finishes first, or its resolution would miss the state handed over.
        await workflow.wait_condition(lambda: self._ladder_idle() and self._notifying == 0 and not self._cancelling)
        while True:
            await self._drain(projector)
            await workflow.wait_condition(workflow.all_handlers_finished)
            await workflow.wait_condition(self._jira_idle)
            if not self._pending:
                break
        workflow.continue_as_new(self.inp.model_copy(update={"state": self.s}))

    async def _drain(self, projector: asyncio.Task[None]) -> None:
        """Wait until every timeline entry is projected (and surface a projector bug, if any)."""
        await workflow.wait_condition(lambda: projector.done() or not (self._pending or self._projecting))
        if projector.done():
            await projector

    async def _wait_in(self, status: IncidentStatus) -> None:
        """Wait until the status changes (or Temporal suggests continue-as-new)."""
        changed = lambda: self.s.status != status or workflow.info().is_continue_as_new_suggested()  # noqa: E731
        if status == S.triggered:
            # One ladder per round: an exhausted ladder is not restarted, a reopen starts a new round.
            if self.s.plan is not None:
                rungs, runner = self._rung_count(), self._run_plan_ladder
            else:
                assert self.s.policy is not None
                rungs, runner = len(self.s.policy.steps), self._run_ladder
            if self._ladder_idle() and self.s.ladder_step < rungs:
                self._ladder = asyncio.create_task(runner())
            ladder = self._ladder
            await self._wait_for_change(changed, lambda: ladder is not None and ladder.done())
            if ladder is not None and ladder.done():
                self._ladder = None
                # Surface a ladder bug as a failed workflow task (retried, visible in the UI), never a silent stop.
                await ladder
        elif status == S.acknowledged:
            await self._wait_for_change(changed)
        elif status == S.resolved:
            assert self.s.resolved_at is not None
            window = timedelta(seconds=self.inp.reopen_window_seconds)
            remaining = self.s.resolved_at + window - workflow.now()
            if remaining <= timedelta(0):
                self._transition(Transition.close, TIMER, "Closed: reopen window elapsed")
                return
            try:
                await workflow.wait_condition(
                    changed, timeout=remaining, timeout_summary=f"reopen window {human_duration(window)}"
                )
            except asyncio.TimeoutError:
                self._transition(Transition.close, TIMER, "Closed: reopen window elapsed")

    # --- escalation ladder ----------------------------------------------------------------

    def _ladder_idle(self) -> bool:
        return self._ladder is None or self._ladder.done()

    async def _run_ladder(self) -> None:
        """Run the rungs from `ladder_step`, waiting until each is due; resumable after continue-as-new."""
        assert self.s.policy is not None
        steps = self.s.policy.steps
        while self.s.ladder_step < len(steps) and self.s.status == S.triggered and not self._continuing:
            index = self.s.ladder_step
            step = steps[index]
            due = self.s.next_escalation_at
            if due is not None and due > workflow.now():
                self._show_details()
                try:
                    await workflow.wait_condition(
                        lambda: self.s.status != S.triggered or self._continuing,
                        timeout=due - workflow.now(),
                        timeout_summary=f"wait {human_duration(due - workflow.now())} for ack before {step.name}",
                    )
                    return
                except asyncio.TimeoutError:
                    pass
            # Checked right before each rung: once an ack has been accepted, nothing new is scheduled.
            if self.s.status != S.triggered:
                return
            self.s.current_step = f"{step.name} ({step.channel.value} → {mask_target(step.target)})"
            self.s.next_escalation_at = None
            self._show_details()
            await self._notify(index, step)
            self.s.ladder_step = index + 1
            if index + 1 < len(steps) and step.wait_seconds:
                self.s.next_escalation_at = workflow.now() + step.wait
        if self.s.ladder_step >= len(steps) and self.s.status == S.triggered:
            self.s.current_step = f"ladder exhausted after {steps[-1].name}"
            self._show_details()

    async def _notify(self, index: int, step: EscalationStep) -> None:
        key = idempotency_key(self.s.number, self.s.ladder_round, index, step)
        self._notifying += 1
        handle = None
        try:
            handle = workflow.start_activity_method(
                NotifyActivities.send_notification,
                NotifyInput(
                    number=self.s.number,
                    title=self.s.title,
                    severity=self.s.severity,
                    service=self.s.service,
                    step=step,
                    step_index=index,
                    ladder_round=self.s.ladder_round,
                    idempotency_key=key,
                    incident_url=f"{self.inp.public_url}/api/v1/incidents/{incident_ref(self.s.number)}",
                    temporal_url=self._temporal_url(),
                    alerts=self.s.alert_digest(),
                    alert_count=self.s.alert_count,
                ),
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=NOTIFY_HEARTBEAT,
                retry_policy=NOTIFY_RETRY,
                # An ack waits for this to settle: if the activity has not started it never will.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"{step.channel.value} → {mask_target(step.target)}",
            )
            self._inflight.add(handle)
            result = await handle
            self._record("notified", TIMER, f"{step.name}: {step.channel.value} {result.status}")
        except (ActivityError, asyncio.CancelledError) as err:
            if self.s.status == S.triggered:
                self._record("notify_failed", TIMER, f"{step.name}: {step.channel.value} failed: {err}")
            else:
                self._record("notify_cancelled", TIMER, f"{step.name}: stopped by {self.s.status.value}")
        finally:
            self._inflight.discard(handle)
            self._notifying -= 1

    def _cancel_pages(self) -> None:
        for handle in self._inflight:
            handle.cancel()

    async def _stop_ladder(self) -> None:
        """Cancel every in-flight page and wait until they have settled, so no page starts after we return."""
        self._cancel_pages()
        await workflow.wait_condition(lambda: self._notifying == 0)
        self.s.next_escalation_at = None

    def _retrigger(self) -> None:
        """Acknowledged but not resolved in time: back to triggered, and the ladder starts a new round."""
        since = self.s.acknowledged_by or "someone"
        self.s.retrigger_at = None
        self.s.acknowledged_at = self.s.acknowledged_by = None
        self._new_round()
        self._transition(Transition.retrigger, TIMER, f"Re-triggered: acknowledged by {since} but not resolved")

    def _new_round(self) -> None:
        self.s.ladder_round += 1
        self.s.ladder_step, self.s.next_escalation_at = 0, None
        self.s.deliveries = {}

    # --- messages -------------------------------------------------------------------------

    @workflow.update(name=ACKNOWLEDGE)
    async def acknowledge(self, inp: AcknowledgeInput) -> TransitionResult:
        previous = self.s.status
        try:
            self._transition(Transition.acknowledge, inp.actor, inp.note or "Acknowledged")
        except InvalidTransition as err:
            raise refused(err) from None
        self.s.acknowledged_at = workflow.now()
        self.s.acknowledged_by = inp.actor.label()
        if self.s.plan is not None and self.s.plan.ack_timeout_seconds:
            self.s.retrigger_at = workflow.now() + timedelta(seconds=self.s.plan.ack_timeout_seconds)
        if inp.note and inp.actor.kind != ActorKind.jira:
            self._jira(JiraOp(kind=JiraOpKind.comment, body=f"Acknowledged in Vigil by {inp.actor.label()}: {inp.note}"))
        await self._stop_ladder()
        return TransitionResult(number=self.s.number, status=self.s.status, previous=previous)

    @acknowledge.validator
    def _validate_acknowledge(self, inp: AcknowledgeInput) -> None:
        self._validate(Transition.acknowledge)

    @workflow.update(name=SNOOZE)
    def snooze(self, inp: SnoozeInput) -> TransitionResult:
        """Keep an acknowledged incident quiet for a while; it re-triggers when the snooze ends."""
        self.s.retrigger_at = workflow.now() + timedelta(seconds=inp.seconds)
        until = self.s.retrigger_at.isoformat(timespec="seconds")
        note = f": {inp.note}" if inp.note else ""
        self._record("snoozed", inp.actor, f"Snoozed for {human_duration(timedelta(seconds=inp.seconds))} (until {until}){note}")
        self._show_details()
        return TransitionResult(number=self.s.number, status=self.s.status, previous=self.s.status)

    @snooze.validator
    def _validate_snooze(self, inp: SnoozeInput) -> None:
        if self.s.status != S.acknowledged or self.s.plan is None:
            raise ApplicationError(
                f"only an acknowledged incident can be snoozed; {incident_ref(self.s.number)} is {self.s.status.value}",
                self.s.status.value, type="InvalidTransition", non_retryable=True,
            )

    @workflow.signal(name=JIRA_LINKED)
    def jira_linked(self, key: str) -> None:
        """The incident's JiraSyncWorkflow created (or found) its issue."""
        self._jira_linked(key)

    @workflow.signal(name=DELIVERY_RECEIPT)
    def delivery_receipt(self, inp: ReceiptInput) -> None:
        """A provider's delivery receipt (deduplicated by event id): a failed page escalates at once."""
        self._apply_receipt(inp)

    @workflow.update
    async def resolve(self, inp: ResolveInput) -> TransitionResult:
        previous = self.s.status
        try:
            self._resolve(inp.actor, inp.resolution.strip())
        except InvalidTransition as err:
            raise refused(err) from None
        await self._stop_ladder()
        return TransitionResult(number=self.s.number, status=self.s.status, previous=previous)

    @resolve.validator
    def _validate_resolve(self, inp: ResolveInput) -> None:
        if not inp.resolution.strip():
            raise ApplicationError("a resolution note is required", type="ResolutionRequired")
        self._validate(Transition.resolve)

    @workflow.update(name=ADD_ALERTS)
    def add_alerts(self, inp: AddAlertsInput) -> AddAlertsResult:
        return self._take_alerts(inp.alerts)

    def _take_alerts(self, alerts: list[Alert]) -> AddAlertsResult:
        new, reopened = 0, False
        refired = False
        for alert in alerts:
            key = alert_key(alert.fingerprint)
            known = self.s.alerts.get(key)
            if known is None:
                new += 1
                self._record("alert", SOURCE, f"New alert {alert.status.value}: {alert.summary}")
            elif known.status != alert.status:
                verb = "resolved at source" if alert.status == AlertStatus.resolved else "firing again"
                self._record("alert", SOURCE, f"Alert {verb}: {alert.summary}")
            refired |= alert.status == AlertStatus.firing and (known is None or known.status != alert.status)
            if known is None and len(self.s.alerts) >= MAX_TRACKED_ALERTS:
                # The state must fit in one payload: count it; the database keeps the alert itself.
                self.s.untracked_alerts += 1
            else:
                self.s.alerts[key] = tracked(alert)
            if alert.status == AlertStatus.firing and alert.severity.rank < self.s.severity.rank:
                self.s.severity = alert.severity
                workflow.upsert_search_attributes([sa.SEVERITY.value_set(self.s.severity.value)])
                self._record("severity", SOURCE, f"Severity raised to {alert.severity.value} by: {alert.summary}")
                self._jira_maybe_create()
        if refired and self.s.status == S.resolved:
            self._reopen(SOURCE, "Reopened: an alert fired again within the reopen window")
            reopened = True
        elif refired and self.s.resolve_due_at is not None:
            self.s.resolve_due_at = None
            self._record("flapping", SOURCE, "An alert fired again while its resolution was held: kept open")
        elif self._all_resolved_at_source() and can(self.s.status, Transition.resolve) and self.inp.auto_resolve:
            hold = timedelta(seconds=self.inp.hold_resolution_seconds)
            if not hold:
                self._auto_resolve(f"Auto-resolved: all {self.s.alert_count} alert(s) resolved at the source")
            elif self.s.resolve_due_at is None:
                self.s.resolve_due_at = workflow.now() + hold
                self._record(
                    "resolution_held", SOURCE,
                    f"All alerts resolved at the source; resolving in {human_duration(hold)} unless one fires again",
                )
        return AddAlertsResult(number=self.s.number, status=self.s.status, new_alerts=new, reopened=reopened)

    def _reopen(self, actor: Actor, message: str) -> None:
        self.s.reopen_count += 1
        self._new_round()
        self.s.resolved_at = self.s.resolved_by = self.s.resolution = None
        self._transition(Transition.reopen, actor, message)

    @workflow.update(name=REOPEN)
    def reopen(self, inp: ReopenInput) -> TransitionResult:
        """A person reopens a resolved incident (from Jira): back to triggered, and the ladder starts again."""
        self._reopen(inp.actor, f"Reopened by {inp.actor.label()}" + (f": {inp.note}" if inp.note else ""))
        return TransitionResult(number=self.s.number, status=self.s.status, previous=S.resolved)

    @reopen.validator
    def _validate_reopen(self, inp: ReopenInput) -> None:
        if self._closing:
            raise refused(InvalidTransition(Transition.reopen, S.closed))
        self._validate(Transition.reopen)

    @workflow.update(name=ADD_NOTE)
    def add_note(self, inp: NoteInput) -> TransitionResult:
        """A note on the incident's timeline; a note written in Vigil becomes a Jira comment."""
        self._record("note", inp.actor, inp.body)
        if inp.actor.kind != ActorKind.jira:
            self._jira(JiraOp(kind=JiraOpKind.comment, body=f"Note from {inp.actor.label()} in Vigil: {inp.body}"))
        return TransitionResult(number=self.s.number, status=self.s.status, previous=self.s.status)

    @add_note.validator
    def _validate_note(self, inp: NoteInput) -> None:
        self._refuse_if_closed()

    @workflow.update(name=ASSIGN)
    def assign(self, inp: AssignInput) -> TransitionResult:
        """Who owns the incident; set in Vigil it is mapped to the Jira issue's assignee by email."""
        self.s.assignee = inp.assignee
        if inp.actor.kind != ActorKind.jira:
            self._jira(JiraOp(kind=JiraOpKind.assign, body=inp.assignee))
        self._record("assigned", inp.actor, f"Assigned to {inp.assignee}" if inp.assignee else "Unassigned")
        self._show_details()
        return TransitionResult(number=self.s.number, status=self.s.status, previous=self.s.status)

    @assign.validator
    def _validate_assign(self, inp: AssignInput) -> None:
        self._refuse_if_closed()

    def _refuse_if_closed(self) -> None:
        if self._closing or self.s.status == S.closed:
            raise ApplicationError(f"{incident_ref(self.s.number)} is closed", S.closed.value, type="InvalidTransition",
                                   non_retryable=True)

    def _auto_resolve(self, resolution: str) -> None:
        self._resolve(SOURCE, resolution)
        self._cancel_pages()

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
                timeout=max(at - workflow.now(), timedelta(milliseconds=1)),
                timeout_summary=summary,
            )
        except asyncio.TimeoutError:
            if at == retrigger:
                self._retrigger()
            elif self._all_resolved_at_source() and can(self.s.status, Transition.resolve):
                hold = human_duration(timedelta(seconds=self.inp.hold_resolution_seconds))
                self._auto_resolve(f"Auto-resolved: all {self.s.alert_count} alert(s) stayed resolved for {hold}")

    @add_alerts.validator
    def _validate_add_alerts(self, inp: AddAlertsInput) -> None:
        if self._closing or self.s.status == S.closed:
            raise ApplicationError(f"{incident_ref(self.s.number)} is closed", S.closed.value, type="IncidentClosed")

    @workflow.query
    def state(self) -> IncidentState:
        return self.s

    # --- helpers --------------------------------------------------------------------------

    def _validate(self, transition: Transition) -> None:
        if not can(self.s.status, transition):
            raise refused(InvalidTransition(transition, self.s.status))

    def _all_resolved_at_source(self) -> bool:
        """False once alerts are untracked: whether those resolved is not known here."""
        if self.s.untracked_alerts:
            return False
        return bool(self.s.alerts) and all(a.status == AlertStatus.resolved for a in self.s.alerts.values())

    def _resolve(self, actor: Actor, resolution: str) -> None:
        self.s.resolve_due_at = self.s.retrigger_at = None
        self._transition(Transition.resolve, actor, f"Resolved: {resolution}")
        if actor.kind != ActorKind.jira:
            self._jira(JiraOp(kind=JiraOpKind.comment, body=f"Resolved in Vigil by {actor.label()}: {resolution}"))
        self.s.resolved_at = workflow.now()
        self.s.resolved_by = actor.label()
        self.s.resolution = resolution

    def _transition(self, transition: Transition, actor: Actor, message: str) -> None:
        """Apply a state-machine transition, record it and show it in the UI."""
        self.s.status = next_status(self.s.status, transition)
        if self.s.status == S.closed:
            self._closing = True
            self.s.closed_at = workflow.now()
        if self.s.status != S.triggered:
            self.s.next_escalation_at = None
        workflow.logger.info("INC-%s %s by %s", self.s.number, transition.value, actor.label())
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(self.s.status.value)])
        self._record(self.s.status.value if transition != Transition.reopen else "reopened", actor, message)
        if actor.kind != ActorKind.jira:  # what Jira did, Jira knows
            self._jira_transition(self.s.status)
        self._show_details()

    def _record(self, kind: str, actor: Actor, message: str) -> None:
        self.s.timeline_seq += 1
        self._pending.append(
            TimelineEntry(seq=self.s.timeline_seq, at=workflow.now(), kind=kind, actor=actor.label(), message=message)
        )

    async def _flush(self) -> None:
        """Project the incident row and new timeline entries to the DB (idempotent by seq)."""
        entries, self._pending = self._pending, []
        s = self.s
        await workflow.execute_activity_method(
            StoreActivities.project_incident,
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
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
            summary=f"project {s.status.value}: " + ", ".join(e.kind for e in entries)[:80],
        )

    def _temporal_url(self) -> str:
        info = workflow.info()
        return f"{self.inp.temporal_ui_url}/namespaces/{info.namespace}/workflows/{info.workflow_id}"

    def _show_details(self) -> None:
        s = self.s
        lines = [f"**Status:** {s.status.value}", f"**Severity:** {s.severity.value}"]
        if s.status == S.triggered and s.current_step:
            lines.append(f"**Current step:** {s.current_step}")
        next_step = self._next_step_line()
        if next_step:
            lines.append(next_step)
        elif s.status == S.triggered and s.next_escalation_at:
            lines.append(f"**Next escalation due:** {s.next_escalation_at.isoformat(timespec='seconds')}")
        if s.status == S.acknowledged and s.retrigger_at:
            lines.append(f"**Re-triggers at:** {s.retrigger_at.isoformat(timespec='seconds')} unless resolved")
        if s.acknowledged_by and s.status != S.triggered:
            lines.append(f"**Acknowledged by:** {s.acknowledged_by}")
        if s.resolution and s.status in (S.resolved, S.closed):
            lines.append(f"**Resolution:** {s.resolution}")
        firing = sum(1 for a in s.alerts.values() if a.status == AlertStatus.firing)
        lines.append(f"**Alerts:** {firing} firing / {s.alert_count} total")
        if s.untracked_alerts:
            lines.append(f"**Not auto-resolved:** over {MAX_TRACKED_ALERTS} alerts; resolve it by hand")
        if s.reopen_count:
            lines.append(f"**Reopened:** {s.reopen_count}×")
        if s.jira_key:
            lines.append(f"**Jira:** {s.jira_key}")
        if s.assignee:
            lines.append(f"**Assignee:** {s.assignee}")
        workflow.set_current_details("  \n".join(lines))


__all__ = ["IncidentWorkflow", "Severity"]
