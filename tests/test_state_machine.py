"""The incident state machine, as a pure function."""

from __future__ import annotations

import pytest

from vigil.contracts import IncidentStatus as S
from vigil.state_machine import TRANSITIONS, InvalidTransition, Transition, can, next_status

ALLOWED = {
    (S.triggered, Transition.acknowledge): S.acknowledged,
    (S.triggered, Transition.resolve): S.resolved,
    (S.acknowledged, Transition.resolve): S.resolved,
    (S.acknowledged, Transition.retrigger): S.triggered,
    (S.resolved, Transition.reopen): S.triggered,
    (S.resolved, Transition.close): S.closed,
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("transition", list(Transition))
def test_every_pair(current: S, transition: Transition) -> None:
    expected = ALLOWED.get((current, transition))
    assert can(current, transition) is (expected is not None)
    if expected is None:
        with pytest.raises(InvalidTransition) as err:
            next_status(current, transition)
        assert current.value in str(err.value)
        assert err.value.current is current
    else:
        assert next_status(current, transition) is expected


def test_closed_is_terminal() -> None:
    assert not any(S.closed in sources for sources in TRANSITIONS.values())


def test_refusal_names_current_state_and_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition, match=r"cannot acknowledge an incident that is resolved \(allowed from: triggered\)"):
        next_status(S.resolved, Transition.acknowledge)
