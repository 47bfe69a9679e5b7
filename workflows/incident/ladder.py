"""The escalation ladder: the frozen policy's rungs of (recipient, channel) pages, each when due, until an ack.

The rungs are `vigil.escalation.rungs(plan)`: the steps, repeated, then the manager; the policy preview expands
a policy the same way. The ladder owns the pages in flight: stopping it cancels them and waits until they have
settled, so no page starts after an acknowledgement is accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.people import PeopleActivities
    from activities.policy import PolicyActivities
    from vigil.contracts import (
        Channel,
        FrozenPolicy,
        IncidentInput,
        IncidentState,
        IncidentStatus,
        LoadPolicyInput,
        NotifyInput,
        PageState,
        PageStatus,
        PolicyStep,
        ReceiptInput,
        ReceiptType,
        Recipient,
        ResolveTargetsInput,
        TargetKind,
        incident_ref,
    )
    from vigil.escalation import Rung, contact_recipient, deliveries, delivery_key, human_duration, mask_target, rungs
    from workflows.incident.details import temporal_url
    from workflows.incident.legacy_ladder import LegacyLadder
    from workflows.incident.options import (
        NOTIFY_HEARTBEAT,
        NOTIFY_RETRY,
        NOTIFY_TIMEOUT,
        RESOLVE_RETRY,
        RESOLVE_TIMEOUT,
        STORE_RETRY,
        STORE_TIMEOUT,
    )
    from workflows.incident.timeline import PROVIDER, TIMER, Timeline

S = IncidentStatus
RECEIPT_STATUS = {
    ReceiptType.delivered: PageStatus.delivered,
    ReceiptType.failed: PageStatus.failed,
    ReceiptType.ivr_answered: PageStatus.answered,
    ReceiptType.ivr_no_answer: PageStatus.unanswered,
}
RECEIPTS_KEPT = 200  # event ids remembered for dedup; a provider redelivers within minutes, not hundreds of events


class InFlight:
    """The notification activities running now: an ack cancels them and waits until they have settled."""

    def __init__(self) -> None:
        # Ordered (a dict, not a set): each cancel is a command, and commands must come in the same order on
        # replay. A set of handles iterates by their ids, which differ from one worker process to the next.
        self._handles: dict[workflow.ActivityHandle, None] = {}

    def add(self, handle: workflow.ActivityHandle) -> None:
        self._handles[handle] = None

    def discard(self, handle: workflow.ActivityHandle | None) -> None:
        self._handles.pop(handle, None)  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        return len(self._handles)

    def cancel_all(self) -> None:
        for handle in self._handles:
            handle.cancel()


class Ladder:
    def __init__(self, s: IncidentState, inp: IncidentInput, timeline: Timeline, on_change: Callable[[], None]) -> None:
        self.s, self.inp, self.timeline, self._changed = s, inp, timeline, on_change
        self.inflight = InFlight()
        self.pausing = False  # continue-as-new: stop at the next wait; the position is in `s`
        self._task: asyncio.Task[None] | None = None
        self._pages: set[asyncio.Task[None]] = set()
        self._legacy = LegacyLadder(s, inp, timeline, self.inflight, on_change, lambda: self.pausing)

    # --- the ladder as the workflow sees it --------------------------------------------------

    def frozen(self, plan: FrozenPolicy) -> None:
        """Take the policy the API froze when it created the incident."""
        self.s.plan = plan
        self.timeline.record("policy", TIMER, f"Escalation policy frozen: {plan.name}")

    async def freeze_policy(self, policies: bool) -> None:
        """Freeze the policy routed for the incident (`policies`: the run has the escalation-policies patch)."""
        policy_input = LoadPolicyInput(service=self.s.service, severity=self.s.severity)
        if policies:
            self.s.plan = await workflow.execute_activity_method(
                PolicyActivities.freeze_escalation_policy, policy_input, start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY, summary="freeze escalation policy",
            )
            self.frozen(self.s.plan)
        else:
            self.s.policy = await workflow.execute_activity_method(
                PolicyActivities.load_escalation_policy, policy_input, start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY, summary="freeze escalation policy",
            )

    def idle(self) -> bool:
        return self._task is None or self._task.done()

    def run_if_due(self) -> asyncio.Task[None] | None:
        """Start the rest of this round's ladder unless it runs or is exhausted: one ladder per round."""
        if self.idle() and self.s.ladder_step < self.rung_count():
            self._task = asyncio.create_task(self._run())
        return self._task

    async def finished(self, task: asyncio.Task[None]) -> None:
        self._task = None
        # Surface a ladder bug as a failed workflow task (retried, visible in the UI), never a silent stop.
        await task

    def cancel_pages(self) -> None:
        self.inflight.cancel_all()

    async def stop(self) -> None:
        """Cancel every in-flight page and wait until they have settled, so no page starts after we return."""
        self.cancel_pages()
        await workflow.wait_condition(lambda: self.inflight.count == 0)
        self.s.next_escalation_at = None

    def new_round(self) -> None:
        self.s.ladder_round += 1
        self.s.ladder_step, self.s.next_escalation_at = 0, None
        self.s.pages = {}

    def receipt(self, inp: ReceiptInput) -> None:
        """A provider's delivery receipt (deduplicated by event id): a failed page escalates at once."""
        if inp.event_id in self.s.receipts_seen:
            return
        self.s.receipts_seen = [*self.s.receipts_seen, inp.event_id][-RECEIPTS_KEPT:]
        d = next((d for d in self.s.pages.values() if d.key == inp.idempotency_key), None)
        if d is None or d.status in (PageStatus.failed, PageStatus.cancelled):
            return  # an earlier round's page, or one already given up on
        d.status = RECEIPT_STATUS[inp.type]
        detail = f": {inp.error}" if inp.error else ""
        self.timeline.record("receipt", PROVIDER, f"{d.step}: {d.channel.value} → {d.recipient} {inp.type.value}{detail}")
        if d.status == PageStatus.failed:
            self._changed()

    def next_step_line(self) -> str | None:
        if self.s.plan is None or self.s.status != S.triggered or self.s.ladder_step >= self.rung_count():
            return None
        due = self.s.next_escalation_at
        when = due.isoformat(timespec="seconds") if due else "now"
        return f"**Next step:** {self._rung_name(self.s.ladder_step)} at {when}"

    # --- shape of the ladder -------------------------------------------------------------------

    def rung_count(self) -> int:
        if self.s.plan is None:
            return self._legacy.rung_count()
        return len(self._rungs())

    def _rungs(self) -> list[Rung]:
        assert self.s.plan is not None
        return rungs(self.s.plan)  # the same expansion as the policy preview

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
        pages = [d for d in self.s.pages.values() if d.rung == rung]
        return all(d.status.dead for d in pages)

    def _may_page(self, ladder_round: int) -> bool:
        return self.s.status == S.triggered and not self.pausing and self.s.ladder_round == ladder_round

    # --- the rungs -------------------------------------------------------------------------------

    async def _run(self) -> None:
        if self.s.plan is None:
            await self._legacy.run()
        else:
            await self._run_plan()

    async def _run_plan(self) -> None:
        """Page rung after rung from `ladder_step`, each when due; resumable after continue-as-new."""
        total = self.rung_count()
        ladder_round = self.s.ladder_round
        while self.s.ladder_step < total and self._may_page(ladder_round):
            rung = self.s.ladder_step
            due = self.s.next_escalation_at
            if due is not None and due > workflow.now():
                self._changed()
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
                    self.timeline.record(
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
                self.timeline.record("notify_failed", TIMER, f"{self._rung_name(rung)}: nobody to page")
            if pairs:
                self.timeline.hold_for_pages()
            for recipient, channel in pairs:
                task = asyncio.create_task(self._page(rung, step, recipient, channel, ladder_round))
                self._pages.add(task)  # a strong reference until it is done
                task.add_done_callback(self._pages.discard)
            self.s.ladder_step = rung + 1
            if rung + 1 < total and step.wait_seconds:
                self.s.next_escalation_at = workflow.now() + step.wait
            self._changed()
        if self.s.ladder_step >= total and self._may_page(ladder_round):
            self.s.current_step = f"ladder exhausted after {self._rung_name(total - 1)}"
            self._changed()

    async def _recipients(self, step: PolicyStep) -> list[Recipient]:
        """Contacts carry their addresses; users, groups, schedules and webhooks are looked up now, so a
        schedule pages whoever is on call when the step runs."""
        if all(t.kind == TargetKind.contact for t in step.targets):
            return [contact_recipient(t) for t in step.targets]
        result = await workflow.execute_activity_method(
            PeopleActivities.resolve_targets,
            ResolveTargetsInput(targets=step.targets, at=workflow.now()),
            start_to_close_timeout=RESOLVE_TIMEOUT,
            retry_policy=RESOLVE_RETRY,
            summary=f"who to page: {step.name}",
        )
        for problem in result.unresolved:
            self.timeline.record("notify_failed", TIMER, f"{step.name}: {problem}")
        return result.recipients

    async def _page(
        self, rung: int, step: PolicyStep, recipient: Recipient, channel: Channel, ladder_round: int
    ) -> None:
        """One (recipient, channel) page; an unanswered call is retried up to the policy's attempts."""
        plan = self.s.plan
        assert plan is not None
        base = delivery_key(self.s.number, ladder_round, rung, channel, recipient)
        who = _who(recipient, channel)
        d = PageState(key=base, rung=rung, step=self._rung_name(rung), channel=channel, recipient=who)
        self.s.pages[base] = d
        calls = plan.ivr_attempts if channel == Channel.ivr else 1
        for call in range(1, calls + 1):
            if not self._may_page(ladder_round):
                d.status = PageStatus.cancelled
                return
            d.key, d.calls, d.status = (base if call == 1 else f"{base}/call{call}"), call, PageStatus.sending
            inp = NotifyInput(
                number=self.s.number, title=self.s.title, severity=self.s.severity, service=self.s.service,
                step_name=d.step, channel=channel, recipient=recipient, call=call, step_index=rung,
                ladder_round=ladder_round, idempotency_key=d.key,
                incident_url=f"{self.inp.public_url}/api/v1/incidents/{incident_ref(self.s.number)}",
                temporal_url=temporal_url(self.inp), alerts=self.s.alert_digest(), alert_count=self.s.alert_count,
            )
            summary = f"{channel.value} → {who}" + (f" (call {call}/{calls})" if calls > 1 else "")
            if not await self._notify(d, inp, summary, ladder_round):
                return
            if channel != Channel.ivr:
                return
            # The call was placed; whether it was picked up arrives as a provider receipt (if ever).
            await workflow.wait_condition(lambda: d.status != PageStatus.sent or not self._may_page(ladder_round))
            if d.status != PageStatus.unanswered:
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
        d.status = PageStatus.failed
        self.timeline.record("notify_failed", TIMER, f"{d.step}: ivr to {who} unanswered after {calls} call(s)")

    async def _notify(self, d: PageState, inp: NotifyInput, summary: str, ladder_round: int) -> bool:
        """Run one notification activity; an ack cancels it and waits until it has settled."""
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
        self.inflight.add(handle)
        try:
            result = await handle
        except (ActivityError, asyncio.CancelledError) as err:
            if self._may_page(ladder_round):
                d.status = PageStatus.failed
                self.timeline.record("notify_failed", TIMER, f"{d.step}: {summary} failed: {cause(err)}")
            else:
                d.status = PageStatus.cancelled
                self.timeline.record("notify_cancelled", TIMER, f"{d.step}: {summary} stopped by {self.s.status.value}")
            return False
        finally:
            self.inflight.discard(handle)
        if d.status == PageStatus.sending:  # a fast receipt may have landed first
            d.status = PageStatus.sent
        self.timeline.record("notified", TIMER, f"{d.step}: {summary} {result.status}")
        return True


def _who(recipient: Recipient, channel: Channel) -> str:
    if channel == Channel.webhook:
        return recipient.name  # a URL may carry a token
    masked = mask_target(recipient.address(channel) or "")
    return masked if recipient.kind == TargetKind.contact else f"{recipient.name} {masked}"


def cause(err: BaseException) -> str:
    """What an activity failure says, for the timeline."""
    inner = err.__cause__ if isinstance(err, ActivityError) and err.__cause__ else err
    return str(inner) or type(inner).__name__
