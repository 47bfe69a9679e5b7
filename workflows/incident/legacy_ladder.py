"""The fixed ladder of incidents started before escalation policies (no `escalation-policies` patch marker).

Kept only so that such incidents, if any still run, replay and finish. New incidents never take this path.
To remove it:
1. Check that no pre-policy incident is open, e.g.
   `temporal workflow list --query "WorkflowType='IncidentWorkflow' AND ExecutionStatus='Running'"` and replay
   them with this module deleted (the replay gate, or `tests/test_replay.py` against exported histories).
2. Replace `workflow.patched(POLICIES_PATCH)` with `workflow.deprecate_patch(POLICIES_PATCH)` in workflow.py for
   one release, so histories with the marker keep replaying while new ones stop recording it.
3. Delete this module, `LegacyPolicy`/`LegacyStep`, `load_escalation_policy` and `tests/histories/pre_policies/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from vigil.contracts import IncidentInput, IncidentState, IncidentStatus, LegacyStep, NotifyInput, incident_ref
    from vigil.escalation import human_duration, legacy_idempotency_key, mask_target
    from workflows.incident.details import temporal_url
    from workflows.incident.options import NOTIFY_HEARTBEAT, NOTIFY_RETRY
    from workflows.incident.timeline import TIMER, Timeline

if TYPE_CHECKING:
    from workflows.incident.ladder import InFlight

S = IncidentStatus
# The timeout these incidents were started with; the policy ladder's NOTIFY_TIMEOUT is shorter.
LEGACY_NOTIFY_TIMEOUT = timedelta(seconds=60)


class LegacyLadder:
    def __init__(
        self, s: IncidentState, inp: IncidentInput, timeline: Timeline, inflight: InFlight,
        on_change: Callable[[], None], pausing: Callable[[], bool],
    ) -> None:
        self.s, self.inp, self.timeline, self.inflight = s, inp, timeline, inflight
        self._changed, self._pausing = on_change, pausing

    def rung_count(self) -> int:
        assert self.s.policy is not None
        return len(self.s.policy.steps)

    async def run(self) -> None:
        """Run the rungs from `ladder_step`, waiting until each is due; resumable after continue-as-new."""
        assert self.s.policy is not None
        steps = self.s.policy.steps
        while self.s.ladder_step < len(steps) and self.s.status == S.triggered and not self._pausing():
            index = self.s.ladder_step
            step = steps[index]
            due = self.s.next_escalation_at
            if due is not None and due > workflow.now():
                self._changed()
                try:
                    await workflow.wait_condition(
                        lambda: self.s.status != S.triggered or self._pausing(),
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
            self._changed()
            await self._notify(index, step)
            self.s.ladder_step = index + 1
            if index + 1 < len(steps) and step.wait_seconds:
                self.s.next_escalation_at = workflow.now() + step.wait
        if self.s.ladder_step >= len(steps) and self.s.status == S.triggered:
            self.s.current_step = f"ladder exhausted after {steps[-1].name}"
            self._changed()

    async def _notify(self, index: int, step: LegacyStep) -> None:
        key = legacy_idempotency_key(self.s.number, self.s.ladder_round, index, step)
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
                    temporal_url=temporal_url(self.inp),
                    alerts=self.s.alert_digest(),
                    alert_count=self.s.alert_count,
                ),
                start_to_close_timeout=LEGACY_NOTIFY_TIMEOUT,
                heartbeat_timeout=NOTIFY_HEARTBEAT,
                retry_policy=NOTIFY_RETRY,
                # An ack waits for this to settle: if the activity has not started it never will.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"{step.channel.value} → {mask_target(step.target)}",
            )
            self.inflight.add(handle)
            result = await handle
            self.timeline.record("notified", TIMER, f"{step.name}: {step.channel.value} {result.status}")
        except (ActivityError, asyncio.CancelledError) as err:
            if self.s.status == S.triggered:
                self.timeline.record("notify_failed", TIMER, f"{step.name}: {step.channel.value} failed: {err}")
            else:
                self.timeline.record("notify_cancelled", TIMER, f"{step.name}: stopped by {self.s.status.value}")
        finally:
            self.inflight.discard(handle)
