"""A heartbeat monitor as a durable timer: `vigil-heartbeat-<id>` waits for the next check-in; a check-in (a
signal) resets the timer; a miss opens an alert for the monitor's service through the normal alert path, and
the next check-in resolves it. The timer lives in Temporal, so it survives worker restarts and deploys."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.heartbeat import HeartbeatActivities
    from vigil.contracts import (
        HEARTBEAT_CHECK_IN,
        HEARTBEAT_CONFIGURE,
        HEARTBEAT_STATE,
        HEARTBEAT_WORKFLOW,
        AlertStatus,
        HeartbeatAlertInput,
        HeartbeatCheckIn,
        HeartbeatConfig,
        HeartbeatInput,
        HeartbeatState,
    )

ALERT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@workflow.defn(name=HEARTBEAT_WORKFLOW)
class HeartbeatMonitorWorkflow:
    @workflow.init
    def __init__(self, inp: HeartbeatInput) -> None:
        self.s = HeartbeatState.model_validate(inp.model_dump())
        self._woken = False
        self._recovered = False  # a check-in came while the alert fired: resolve it
        self._run_check_ins = 0

    @workflow.run
    async def run(self, inp: HeartbeatInput) -> None:
        if self.s.since is None:
            self.s.since = workflow.now()
        try:
            # A check-in adds six events (signal, workflow task x3, timer cancelled and started): a run ends well
            # before Temporal's 10,240-event warning, so replaying an evicted monitor stays cheap.
            while True:
                # Before waiting: a check-in handled before the run started (signal-with-start) or during an
                # activity is not lost, nor carried unresolved into a continue-as-new.
                if self._recovered:
                    await self._alert(AlertStatus.resolved)
                if self._run_check_ins >= inp.check_ins_per_run or workflow.info().is_continue_as_new_suggested():
                    break
                self._details()
                await self._wait()
        except asyncio.CancelledError:
            # Cancelled = the monitor was deleted. An alert left firing would keep its incident open forever.
            if self.s.firing:
                await self._alert(AlertStatus.resolved)
            workflow.set_current_details("deleted")
            # Completed, not cancelled: a late check-in's signal-with-start must not restart a deleted monitor
            # (the client starts with ALLOW_DUPLICATE_FAILED_ONLY).
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(HeartbeatInput.model_validate(self.s.model_dump(exclude={"deadline"})))

    async def _wait(self) -> None:
        """Until a message wakes the loop, or the deadline passes (then the miss is raised)."""
        self._woken = False
        deadline = self._deadline()
        if deadline is None:
            await workflow.wait_condition(lambda: self._woken)
            return
        if deadline > workflow.now():
            try:
                await workflow.wait_condition(
                    lambda: self._woken, timeout=deadline - workflow.now(),
                    timeout_summary=f"wait {_span(self.s.config.period)} for a check-in",
                )
                return
            except asyncio.TimeoutError:
                pass
        # A check-in handled in the same task as the timer moved the deadline: not a miss.
        if self._deadline() is not None and workflow.now() >= self._deadline():  # type: ignore[operator]
            self.s.missed += 1
            await self._alert(AlertStatus.firing)

    def _deadline(self) -> datetime | None:
        if self.s.config.paused or self.s.firing or self.s.since is None:
            return None
        return self.s.since + self.s.config.period

    async def _alert(self, status: AlertStatus) -> None:
        # State first: a check-in that arrives while the activity runs must see the alert as firing.
        firing = self.s.firing = status == AlertStatus.firing
        self._recovered = False
        await workflow.execute_activity_method(
            HeartbeatActivities.open_heartbeat_alert if firing else HeartbeatActivities.resolve_heartbeat_alert,
            HeartbeatAlertInput(
                monitor_id=self.s.monitor_id, config=self.s.config, episode=self.s.missed, status=status,
                since=self.s.since or workflow.now(), at=workflow.now(),
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=ALERT_RETRY,
            summary=f"{'open' if firing else 'resolve'} the missed-heartbeat alert of {self.s.config.name!r}",
        )

    def _details(self) -> None:
        c = self.s.config
        every = f"every {_span(timedelta(seconds=c.interval_seconds))} + {_span(timedelta(seconds=c.grace_seconds))} grace"
        if self.s.firing:
            state = f"DOWN since {self.s.since:%Y-%m-%d %H:%M:%SZ}: missed, waiting for a check-in"
        elif c.paused:
            state = "paused"
        else:
            state = f"up: next check-in due by {self._deadline():%Y-%m-%d %H:%M:%SZ}"
        workflow.set_current_details(f"{state}\n\n{c.service}, {every}; {self.s.check_ins} check-ins, {self.s.missed} missed")

    @workflow.signal(name=HEARTBEAT_CHECK_IN)
    def check_in(self, _inp: HeartbeatCheckIn) -> None:
        now = workflow.now()
        self.s.since = self.s.last_check_in = now
        self.s.check_ins += 1
        self._run_check_ins += 1
        if self.s.firing:
            self._recovered = True
        self._woken = True

    @workflow.update(name=HEARTBEAT_CONFIGURE)
    def configure(self, config: HeartbeatConfig) -> HeartbeatState:
        """New settings take effect now: the deadline is counted from the last check-in with the new period."""
        if self.s.config.paused and not config.paused:
            self.s.since = workflow.now()  # a resumed monitor gets a whole period for its first check-in
        self.s.config = config
        self._woken = True
        return self.state()

    @configure.validator
    def _check_config(self, config: HeartbeatConfig) -> None:
        if config.interval_seconds < 1 or config.grace_seconds < 0:
            raise ValueError("interval_seconds must be at least 1 and grace_seconds at least 0")

    @workflow.query(name=HEARTBEAT_STATE)
    def state(self) -> HeartbeatState:
        return self.s.model_copy(update={"deadline": self._deadline()})
