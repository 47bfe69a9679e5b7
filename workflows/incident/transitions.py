"""The incident's status changes: each one checked against the state machine, recorded with who caused it,
searchable in the Temporal UI, shown in its details and told to Jira (unless Jira caused it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from vigil import search_attributes as sa
    from vigil.contracts import (
        REFUSED_TRANSITION,
        Actor,
        ActorKind,
        IncidentState,
        IncidentStatus,
        incident_ref,
    )
    from vigil.escalation import human_duration
    from vigil.state_machine import InvalidTransition, Transition, can, next_status
    from workflows.incident.jira_link import JiraLink
    from workflows.incident.ladder import Ladder
    from workflows.incident.timeline import SOURCE, TIMER, Timeline

S = IncidentStatus
# Marks runs where an ack that arrived before the policy was frozen gets the policy's ack timeout (runs before it
# never re-triggered such an ack).
EARLY_ACK_PATCH = "early-ack-timeout"


def refused(err: InvalidTransition) -> ApplicationError:
    """A business refusal the API turns into 409; `details` carries the current state."""
    return ApplicationError(str(err), err.current.value, type=REFUSED_TRANSITION, non_retryable=True)


class Transitions:
    def __init__(
        self, s: IncidentState, timeline: Timeline, ladder: Ladder, jira: JiraLink, on_change: Callable[[], None]
    ) -> None:
        self.s, self.timeline, self.ladder, self.jira, self._changed = s, timeline, ladder, jira, on_change
        self.closing = False  # `close` is applied: nothing may change the incident any more

    # --- checks, for update validators ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.closing or self.s.status == S.closed

    def require(self, transition: Transition) -> None:
        if not can(self.s.status, transition):
            raise refused(InvalidTransition(transition, self.s.status))

    def require_snoozable(self) -> None:
        """Only an acknowledged incident with a frozen policy (not the legacy ladder) can be snoozed."""
        if self.s.status != S.acknowledged or self.s.plan is None:
            raise ApplicationError(
                f"only an acknowledged incident can be snoozed; {incident_ref(self.s.number)} is {self.s.status.value}",
                self.s.status.value, type=REFUSED_TRANSITION, non_retryable=True,
            )

    def require_reopenable(self) -> None:
        if self.closing:
            raise refused(InvalidTransition(Transition.reopen, S.closed))
        self.require(Transition.reopen)

    def refuse_if_closed(self, error_type: str = REFUSED_TRANSITION) -> None:
        """A closed incident takes no more changes (`REFUSED_CLOSED` for alerts: the caller opens a new one)."""
        if self.closed:
            raise ApplicationError(
                f"{incident_ref(self.s.number)} is closed", S.closed.value, type=error_type, non_retryable=True
            )

    # --- the changes -----------------------------------------------------------------------------------

    def apply(self, transition: Transition, actor: Actor, message: str) -> None:
        """Apply a state-machine transition, record it and show it in the UI."""
        self.s.status = next_status(self.s.status, transition)
        if self.s.status == S.closed:
            self.closing = True
            self.s.closed_at = workflow.now()
        if self.s.status != S.triggered:
            self.s.next_escalation_at = None
        workflow.logger.info("INC-%s %s by %s", self.s.number, transition.value, actor.label())
        workflow.upsert_search_attributes([sa.INCIDENT_STATUS.value_set(self.s.status.value)])
        self.timeline.record(self.s.status.value if transition != Transition.reopen else "reopened", actor, message)
        if actor.kind != ActorKind.jira:  # what Jira did, Jira knows
            self.jira.transition(self.s.status)
        self._changed()

    def acknowledge(self, actor: Actor, note: str | None) -> None:
        try:
            self.apply(Transition.acknowledge, actor, note or "Acknowledged")
        except InvalidTransition as err:
            raise refused(err) from None
        self.s.acknowledged_at = workflow.now()
        self.s.acknowledged_by = actor.label()
        if self.s.plan is not None and self.s.plan.ack_timeout_seconds:
            self.s.retrigger_at = workflow.now() + timedelta(seconds=self.s.plan.ack_timeout_seconds)
        if note and actor.kind != ActorKind.jira:
            self.jira.comment(f"Acknowledged in Vigil by {actor.label()}: {note}")

    def ack_timeout_after_freeze(self) -> None:
        """An ack accepted before the policy was frozen had no ack timeout to start: it starts now, counted from
        the ack, so an incident acknowledged in its first second still re-triggers if nobody resolves it."""
        plan = self.s.plan
        if (
            self.s.status == S.acknowledged and self.s.retrigger_at is None and self.s.acknowledged_at is not None
            and plan is not None and plan.ack_timeout_seconds and workflow.patched(EARLY_ACK_PATCH)
        ):
            self.s.retrigger_at = self.s.acknowledged_at + timedelta(seconds=plan.ack_timeout_seconds)
            self._changed()

    def resolve(self, actor: Actor, resolution: str) -> None:
        self.s.resolve_due_at = self.s.retrigger_at = None
        self.apply(Transition.resolve, actor, f"Resolved: {resolution}")
        if actor.kind != ActorKind.jira:
            self.jira.comment(f"Resolved in Vigil by {actor.label()}: {resolution}")
        self.s.resolved_at = workflow.now()
        self.s.resolved_by = actor.label()
        self.s.resolution = resolution

    def auto_resolve(self, resolution: str) -> None:
        """Resolved by the alert source: pages in flight are cancelled (without waiting for them)."""
        self.resolve(SOURCE, resolution)
        self.ladder.cancel_pages()

    def reopen(self, actor: Actor, message: str) -> None:
        self.s.reopen_count += 1
        self.ladder.new_round()
        self.s.resolved_at = self.s.resolved_by = self.s.resolution = None
        self.apply(Transition.reopen, actor, message)

    def retrigger(self) -> None:
        """Acknowledged but not resolved in time: back to triggered, and the ladder starts a new round."""
        since = self.s.acknowledged_by or "someone"
        self.s.retrigger_at = None
        self.s.acknowledged_at = self.s.acknowledged_by = None
        self.ladder.new_round()
        self.apply(Transition.retrigger, TIMER, f"Re-triggered: acknowledged by {since} but not resolved")

    def snooze(self, actor: Actor, period: timedelta, note: str) -> None:
        """Keep an acknowledged incident quiet for a while; it re-triggers when the snooze ends."""
        self.s.retrigger_at = workflow.now() + period
        until = self.s.retrigger_at.isoformat(timespec="seconds")
        self.timeline.record("snoozed", actor, f"Snoozed for {human_duration(period)} (until {until})"
                             + (f": {note}" if note else ""))
        self._changed()

    def close(self, actor: Actor, message: str) -> None:
        self.apply(Transition.close, actor, message)
