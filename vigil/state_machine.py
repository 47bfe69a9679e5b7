"""The incident state machine: triggered -> acknowledged -> resolved -> closed, plus re-trigger and reopen."""

from __future__ import annotations

from enum import StrEnum

from vigil.contracts import IncidentStatus as S


class Transition(StrEnum):
    acknowledge = "acknowledge"
    resolve = "resolve"
    close = "close"
    retrigger = "retrigger"  # ack timeout
    reopen = "reopen"  # alert re-fires within the reopen window


TRANSITIONS: dict[Transition, dict[S, S]] = {
    Transition.acknowledge: {S.triggered: S.acknowledged},
    Transition.resolve: {S.triggered: S.resolved, S.acknowledged: S.resolved},
    Transition.close: {S.resolved: S.closed},
    Transition.retrigger: {S.acknowledged: S.triggered},
    Transition.reopen: {S.resolved: S.triggered},
}


class InvalidTransition(Exception):
    """Refused transition; the message names the current state."""

    def __init__(self, transition: Transition, current: S) -> None:
        self.transition = transition
        self.current = current
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[transition]))
        super().__init__(
            f"cannot {transition.value} an incident that is {current.value} (allowed from: {allowed})"
        )


def next_status(current: S, transition: Transition) -> S:
    """The status after `transition`, or InvalidTransition."""
    try:
        return TRANSITIONS[transition][current]
    except KeyError:
        raise InvalidTransition(transition, current) from None


def can(current: S, transition: Transition) -> bool:
    return current in TRANSITIONS[transition]
