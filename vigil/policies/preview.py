"""The timeline a policy would follow if nobody acknowledges: who is paged, how, when, and who is not."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from vigil.contracts import Channel, FrozenPolicy, PolicyTarget, ResolveTargetsResult, Severity, TargetKind
from vigil.escalation import plan
from vigil.models import EscalationPolicyRow
from vigil.policies.service import freeze, resolve_targets


class PreviewStep(BaseModel):
    """Where a page (or a gap) sits in the ladder. `round` 0 is the first pass, 1 the first repeat; the
    manager step has `manager` true and `step_index` = the number of steps."""

    offset_seconds: int
    at: datetime
    round: int
    step_index: int
    step_name: str
    manager: bool = False


class PreviewEntry(PreviewStep):
    channel: Channel
    recipient: str = Field(description="The user's, webhook's or contact's name.")
    recipient_kind: TargetKind
    address: str = Field(description="Email, phone number or URL (admins only).")
    via: str = Field(description='How the recipient was reached: "group ops", "schedule primary (on call)".')
    attempts: int = Field(default=1, description="IVR: calls placed while unanswered, `ivr_retry_seconds` apart.")


class PreviewGap(PreviewStep):
    problem: str = Field(description='A target that pages nobody: "schedule primary: nobody on call".')


class Preview(BaseModel):
    policy: FrozenPolicy = Field(description="The policy as an incident of this severity would freeze it.")
    severity: Severity
    start: datetime
    entries: list[PreviewEntry]
    unresolved: list[PreviewGap]


def preview(*, session: Session, policy_id: int, severity: Severity, start: datetime) -> Preview:
    """Every (recipient, channel) page of the ladder from `start`, targets resolved at each step's own time.

    The timing is `vigil.escalation.rungs`: a step's wait comes after it, so the manager step follows the last
    step of the last round by that step's wait. A recipient whom none of the step's channels reaches (an SMS
    step to a user without a phone) is listed in `unresolved`, as is a target that resolves to nobody."""
    row = session.get(EscalationPolicyRow, policy_id)
    if row is None:
        raise LookupError(f"escalation policy {policy_id} does not exist")
    frozen = freeze(session=session, policy=row, severity=severity)

    def resolve(targets: list[PolicyTarget], at: datetime) -> ResolveTargetsResult:
        return resolve_targets(session=session, targets=targets, at=at)

    entries: list[PreviewEntry] = []
    gaps: list[PreviewGap] = []
    for planned in plan(frozen, start, resolve):
        rung = planned.rung
        where = PreviewStep(
            offset_seconds=rung.offset_seconds, at=planned.at, round=rung.round, step_index=rung.index,
            step_name=rung.step.name, manager=rung.manager,
        ).model_dump()
        for recipient, channel in planned.pages:
            entries.append(PreviewEntry(
                **where, channel=channel, recipient=recipient.name, recipient_kind=recipient.kind,
                address=recipient.address(channel) or "", via=recipient.via,
                attempts=frozen.ivr_attempts if channel == Channel.ivr else 1,
            ))
        paged = {id(r) for r, _ in planned.pages}
        problems = planned.unresolved + [
            f"{r.via or r.name}: not reachable by {', '.join(c.value for c in rung.step.channels)}"
            for r in planned.recipients if id(r) not in paged
        ]
        gaps.extend(PreviewGap(**where, problem=p) for p in problems)
    return Preview(policy=frozen, severity=severity, start=start, entries=entries, unresolved=gaps)
