"""The escalation ladder of a frozen policy: rungs of (recipient, channel) pages, receipts, IVR retries.

A mixin of IncidentWorkflow (it shares the workflow's state `self.s`), kept apart so each file reads in one
sitting. The rungs are `vigil.escalation.rungs(plan)`: the steps, repeated, then the manager; the policy
preview expands a policy the same way.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from vigil.contracts import incident_ref
    from activities.notify import NotifyActivities
    from activities.store import StoreActivities
    from vigil.contracts import (
        Actor,
        ActorKind,
        Channel,
        DeliveryState,
        DeliveryStatus,
        IncidentStatus,
        NotifyInput,
        PolicyStep,
        ReceiptInput,
        ReceiptType,
        Recipient,
        ResolveTargetsInput,
        TargetKind,
    )
    from vigil.escalation import (
        Rung,
        contact_recipient,
        deliveries,
        delivery_key,
        human_duration,
        mask_target,
        rungs,
    )

if TYPE_CHECKING:
    from vigil.contracts import IncidentInput, IncidentState

S = IncidentStatus
TIMER = Actor(kind=ActorKind.timer, name="timer")
PROVIDER = Actor(kind=ActorKind.system, name="provider")
# Above one attempt's own bounds (HTTP: 3 s connect + 10 s read; SMTP: 10 s per step).
NOTIFY_TIMEOUT = timedelta(seconds=30)
# The activity heartbeats every second while it sends: a worker that died mid-send is noticed after this, and
# its page retried (with the same key) seconds later rather than after NOTIFY_TIMEOUT.
NOTIFY_HEARTBEAT = timedelta(seconds=5)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=4
)
RESOLVE_TIMEOUT = timedelta(seconds=10)
RESOLVE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
RECEIPT_STATUS = {
    ReceiptType.delivered: DeliveryStatus.delivered,
    ReceiptType.failed: DeliveryStatus.failed,
    ReceiptType.ivr_answered: DeliveryStatus.answered,
    ReceiptType.ivr_no_answer: DeliveryStatus.unanswered,
}
RECEIPTS_KEPT = 200  # event ids remembered for dedup; a provider redelivers within minutes, not hundreds of events


class PolicyLadder:
    """Runs `self.s.plan`. Expects the workflow to provide `s`, `inp`, `_inflight`, `_notifying`,
    `_continuing`, `_pages`, `_record`, `_show_details` and `_temporal_url`."""

    s: IncidentState
    inp: IncidentInput
    _inflight: set[workflow.ActivityHandle]
    _notifying: int
    _continuing: bool
    _pages: set[asyncio.Task[None]]

    # --- shape of the ladder -------------------------------------------------------------------

    def _rungs(self) -> list[Rung]:
        assert self.s.plan is not None
        return rungs(self.s.plan)  # the same expansion as the policy preview

    def _rung_count(self) -> int:
        return len(self._rungs())

    def _rung(self, rung: int) -> PolicyStep:
        return self._rungs()[rung].step

    def _rung_name(self, rung: int) -> str:
        r = self._rungs()[rung]
        if r.manager:
            return f"{r.step.name} (manager)"
        return f"{r.step.name} (repeat {r.round})" if r.round else r.step.name

    def _rung_dead(self, rung: int) -> bool:
        """Every page of `rung` failed (or nobody could be paged): escalate without waiting out the timer."""
        if rung < 0:
            return False
        pages = [d for d in self.s.deliveries.values() if d.rung == rung]
        return all(d.status.dead for d in pages)

    def _may_page(self, ladder_round: int) -> bool:
        return self.s.status == S.triggered and not self._continuing and self.s.ladder_round == ladder_round

    # --- the ladder ------------------------------------------------------------------------------

    async def _run_plan_ladder(self) -> None:
        """Page rung after rung from `ladder_step`, each when due; resumable after continue-as-new."""
        total = self._rung_count()
        ladder_round = self.s.ladder_round
        while self.s.ladder_step < total and self._may_page(ladder_round):
            rung = self.s.ladder_step
            due = self.s.next_escalation_at
            if due is not None and due > workflow.now():
                self._show_details()
                try:
                    await workflow.wait_condition(
                        lambda: not self._may_page(ladder_round) or self._rung_dead(rung - 1),
                        timeout=due - workflow.now(),
                        timeout_summary=f"wait {human_duration(due - workflow.now())} for ack before "
                        f"{self._rung_name(rung)}",
                    )
                except asyncio.TimeoutError:
                    pass
                else:
                    if not self._may_page(ladder_round):
                        return
                    self._record(
                        "escalated", TIMER,
                        f"Every page of {self._rung_name(rung - 1)} failed: escalating to {self._rung_name(rung)} now",
                    )
            step = self._rung(rung)
            recipients = await self._recipients(step)
            # Checked right before each rung (and after the lookup): once an ack is accepted, nothing new starts.
            if not self._may_page(ladder_round):
                return
            pairs = deliveries(step, recipients)
            self.s.current_step = f"{self._rung_name(rung)}: " + (
                ", ".join(f"{ch.value} → {_who(r, ch)}" for r, ch in pairs) or "nobody to page"
            )
            self.s.next_escalation_at = None
            if not pairs:
                self._record("notify_failed", TIMER, f"{self._rung_name(rung)}: nobody to page")
            for recipient, channel in pairs:
                task = asyncio.create_task(self._deliver(rung, step, recipient, channel, ladder_round))
                self._pages.add(task)  # a strong reference until it is done
                task.add_done_callback(self._pages.discard)
            self.s.ladder_step = rung + 1
            if rung + 1 < total and step.wait_seconds:
                self.s.next_escalation_at = workflow.now() + step.wait
            self._show_details()
        if self.s.ladder_step >= total and self._may_page(ladder_round):
            self.s.current_step = f"ladder exhausted after {self._rung_name(total - 1)}"
            self._show_details()

    async def _recipients(self, step: PolicyStep) -> list[Recipient]:
        """Contacts carry their addresses; users, groups, schedules and webhooks are looked up now, so a
        schedule pages whoever is on call when the step runs."""
        if all(t.kind == TargetKind.contact for t in step.targets):
            return [contact_recipient(t) for t in step.targets]
        result = await workflow.execute_activity_method(
            StoreActivities.resolve_targets,
            ResolveTargetsInput(targets=step.targets, at=workflow.now()),
            start_to_close_timeout=RESOLVE_TIMEOUT,
            retry_policy=RESOLVE_RETRY,
            summary=f"who to page: {step.name}",
        )
        for problem in result.unresolved:
            self._record("notify_failed", TIMER, f"{step.name}: {problem}")
        return result.recipients

    async def _deliver(
        self, rung: int, step: PolicyStep, recipient: Recipient, channel: Channel, ladder_round: int
    ) -> None:
        """One (recipient, channel) page; an unanswered call is retried up to the policy's attempts."""
        plan = self.s.plan
        assert plan is not None
        base = delivery_key(self.s.number, ladder_round, rung, channel, recipient)
        who = _who(recipient, channel)
        d = DeliveryState(key=base, rung=rung, step=self._rung_name(rung), channel=channel, recipient=who)
        self.s.deliveries[base] = d
        calls = plan.ivr_attempts if channel == Channel.ivr else 1
        for call in range(1, calls + 1):
            if not self._may_page(ladder_round):
                d.status = DeliveryStatus.cancelled
                return
            d.key, d.calls, d.status = (base if call == 1 else f"{base}/call{call}"), call, DeliveryStatus.sending
            inp = NotifyInput(
                number=self.s.number, title=self.s.title, severity=self.s.severity, service=self.s.service,
                step_name=d.step, channel=channel, recipient=recipient, call=call, step_index=rung,
                ladder_round=ladder_round, idempotency_key=d.key,
                incident_url=f"{self.inp.public_url}/api/v1/incidents/{incident_ref(self.s.number)}",
                temporal_url=self._temporal_url(), alerts=self.s.alert_digest(), alert_count=self.s.alert_count,
            )
            summary = f"{channel.value} → {who}" + (f" (call {call}/{calls})" if calls > 1 else "")
            if not await self._notify_one(d, inp, summary, ladder_round):
                return
            if channel != Channel.ivr:
                return
            # The call was placed; whether it was picked up arrives as a provider receipt (if ever).
            await workflow.wait_condition(lambda: d.status != DeliveryStatus.sent or not self._may_page(ladder_round))
            if d.status != DeliveryStatus.unanswered:
                return
            if call < calls:
                retry = timedelta(seconds=plan.ivr_retry_seconds)
                try:
                    await workflow.wait_condition(
                        lambda: not self._may_page(ladder_round), timeout=retry,
                        timeout_summary=f"call {who} again in {human_duration(retry)} (unanswered)",
                    )
                except asyncio.TimeoutError:
                    pass
        d.status = DeliveryStatus.failed
        self._record("notify_failed", TIMER, f"{d.step}: ivr to {who} unanswered after {calls} call(s)")

    async def _notify_one(self, d: DeliveryState, inp: NotifyInput, summary: str, ladder_round: int) -> bool:
        """Run one notification activity; an ack cancels it and waits until it has settled."""
        self._notifying += 1
        handle = workflow.start_activity_method(
            NotifyActivities.send_notification,
            inp,
            start_to_close_timeout=NOTIFY_TIMEOUT,
            heartbeat_timeout=NOTIFY_HEARTBEAT,
            retry_policy=NOTIFY_RETRY,
            # An ack waits for this to settle: if the activity has not started it never will.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )
        self._inflight.add(handle)
        try:
            result = await handle
        except (ActivityError, asyncio.CancelledError) as err:
            if self._may_page(ladder_round):
                d.status = DeliveryStatus.failed
                self._record("notify_failed", TIMER, f"{d.step}: {summary} failed: {_cause(err)}")
            else:
                d.status = DeliveryStatus.cancelled
                self._record("notify_cancelled", TIMER, f"{d.step}: {summary} stopped by {self.s.status.value}")
            return False
        finally:
            self._inflight.discard(handle)
            self._notifying -= 1
        if d.status == DeliveryStatus.sending:  # a fast receipt may have landed first
            d.status = DeliveryStatus.sent
        self._record("notified", TIMER, f"{d.step}: {summary} {result.status}")
        return True

    # --- provider receipts -----------------------------------------------------------------------

    def _apply_receipt(self, inp: ReceiptInput) -> None:
        if inp.event_id in self.s.receipts_seen:
            return
        self.s.receipts_seen = [*self.s.receipts_seen, inp.event_id][-RECEIPTS_KEPT:]
        d = next((d for d in self.s.deliveries.values() if d.key == inp.idempotency_key), None)
        if d is None or d.status in (DeliveryStatus.failed, DeliveryStatus.cancelled):
            return  # an earlier round's page, or one already given up on
        d.status = RECEIPT_STATUS[inp.type]
        detail = f": {inp.error}" if inp.error else ""
        self._record("receipt", PROVIDER, f"{d.step}: {d.channel.value} → {d.recipient} {inp.type.value}{detail}")
        if d.status == DeliveryStatus.failed:
            self._show_details()

    def _next_step_line(self) -> str | None:
        if self.s.plan is None or self.s.status != S.triggered or self.s.ladder_step >= self._rung_count():
            return None
        due = self.s.next_escalation_at
        when = due.isoformat(timespec="seconds") if due else "now"
        return f"**Next step:** {self._rung_name(self.s.ladder_step)} at {when}"

    # Provided by IncidentWorkflow.
    def _record(self, kind: str, actor: Actor, message: str) -> None: ...
    def _show_details(self) -> None: ...
    def _temporal_url(self) -> str: ...


def _who(recipient: Recipient, channel: Channel) -> str:
    if channel == Channel.webhook:
        return recipient.name  # a URL may carry a token
    masked = mask_target(recipient.address(channel) or "")
    return masked if recipient.kind == TargetKind.contact else f"{recipient.name} {masked}"


def _cause(err: BaseException) -> str:
    cause = err.__cause__ if isinstance(err, ActivityError) and err.__cause__ else err
    return str(cause) or type(cause).__name__
