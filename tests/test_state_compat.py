"""State handed over by continue-as-new from a worker of an older release is read by the new one."""

from __future__ import annotations

from datetime import UTC, datetime

from vigil.contracts import IncidentState, PageStatus


def test_pages_handed_over_under_their_old_name_are_kept() -> None:
    state = IncidentState(
        number=7, status="triggered", severity="critical", service="checkout", title="t", group_key="g",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    ).model_dump(mode="json", exclude={"pages"})
    state["deliveries"] = {"INC-7/r0s0/email/user:1": {
        "key": "INC-7/r0s0/email/user:1", "rung": 0, "step": "email", "channel": "email", "recipient": "alice",
        "status": "sent", "calls": 1,
    }}
    pages = IncidentState.model_validate(state).pages
    assert pages["INC-7/r0s0/email/user:1"].status == PageStatus.sent
    assert "pages" in IncidentState.model_validate(state).model_dump()  # written under the new name
