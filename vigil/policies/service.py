"""Route and freeze a policy into an incident, resolve targets to recipients, find what refers to a row.

Used by the admin API and by the worker's activities; keyword-only, like `get(*, session, id)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.contracts import FrozenPolicy, PolicyStep, PolicyTarget, Recipient, ResolveTargetsResult, Severity, TargetKind
from vigil.escalation import contact_recipient
from vigil.models import (
    ContactGroup,
    ContactGroupMember,
    EscalationPolicyRow,
    EscalationRoute,
    Schedule,
    ScheduleOverride,
    ScheduleParticipant,
    User,
    Webhook,
)
from vigil.schedules import oncall_of

TARGET_MODELS: dict[TargetKind, type[User] | type[ContactGroup] | type[Schedule] | type[Webhook]] = {
    TargetKind.user: User,
    TargetKind.group: ContactGroup,
    TargetKind.schedule: Schedule,
    TargetKind.webhook: Webhook,
}


# --- freezing -----------------------------------------------------------------------------------


def match_route(*, session: Session, service: str, severity: Severity) -> EscalationRoute | None:
    """The first route by position whose service (exact or `*`) and severities (empty: all) match."""
    for route in session.scalars(select(EscalationRoute).order_by(EscalationRoute.position)):
        if route.service in ("*", service) and (not route.severities or severity.value in route.severities):
            return route
    return None


def scaled(seconds: int, multiplier: float) -> int:
    """A wait times the severity's multiplier, rounded half up to whole seconds."""
    return int(seconds * multiplier + 0.5)


def target_name(session: Session, target: PolicyTarget) -> str:
    """The row's name (never an address); `#<id> (deleted)` when the row is gone."""
    if target.kind == TargetKind.contact:
        return target.name
    row = session.get(TARGET_MODELS[target.kind], target.id)
    return row.name if row is not None else f"#{target.id} (deleted)"


def stored_step(session: Session, raw: dict[str, Any], multiplier: float) -> PolicyStep:
    step = PolicyStep.model_validate(raw)
    targets = [t.model_copy(update={"name": target_name(session, t)}) for t in step.targets]
    return step.model_copy(update={"targets": targets, "wait_seconds": scaled(step.wait_seconds, multiplier)})


def freeze(*, session: Session, policy: EscalationPolicyRow, severity: Severity) -> FrozenPolicy:
    """The policy as an incident of `severity` runs it: waits scaled by its multiplier, targets named."""
    multiplier = policy.severity_multipliers.get(severity.value, 1.0)
    return FrozenPolicy(
        policy_id=policy.id, name=policy.name,
        steps=[stored_step(session, raw, multiplier) for raw in policy.steps],
        repeat=policy.repeat,
        manager=stored_step(session, policy.manager, multiplier) if policy.manager else None,
        ack_timeout_seconds=policy.ack_timeout_seconds, ivr_attempts=policy.ivr_attempts,
        ivr_retry_seconds=policy.ivr_retry_seconds,
    )


def freeze_policy(*, session: Session, service: str, severity: Severity, default: FrozenPolicy) -> FrozenPolicy:
    """The policy routed for `service` and `severity`, frozen; `default` (the built-in ladder) if no route matches."""
    route = match_route(session=session, service=service, severity=severity)
    if route is None:
        return default
    policy = session.get(EscalationPolicyRow, route.policy_id)
    assert policy is not None  # the foreign key keeps a routed policy
    return freeze(session=session, policy=policy, severity=severity)


# --- resolving ----------------------------------------------------------------------------------


def person(user: User, via: str) -> Recipient:
    return Recipient(kind=TargetKind.user, id=user.id, name=user.name, email=user.email, phone=user.phone, via=via)


def users_in_order(session: Session, ids: list[int]) -> list[User]:
    found = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def resolve_one(session: Session, target: PolicyTarget, at: datetime) -> tuple[list[Recipient], str | None]:
    """The recipients of one target, or why there are none."""
    if target.kind == TargetKind.contact:
        return [contact_recipient(target)], None
    row = session.get(TARGET_MODELS[target.kind], target.id)
    label = f"{target.kind.value} {target.name or f'#{target.id}'}"
    if row is None:
        return [], f"{label}: deleted"
    if isinstance(row, User):
        return [person(row, f"user {row.name}")], None
    if isinstance(row, ContactGroup):
        members = users_in_order(session, row.member_ids)
        return [person(u, f"group {row.name}") for u in members], None if members else f"group {row.name}: no members"
    if isinstance(row, Schedule):
        on = oncall_of(session=session, schedule=row, at=at)
        user = session.get(User, on.user_id) if on else None
        if user is None:
            return [], f"schedule {row.name}: nobody on call"
        return [person(user, f"schedule {row.name} (on call)")], None
    return [Recipient(kind=TargetKind.webhook, id=row.id, name=row.name, url=row.url, via=f"webhook {row.name}")], None


def resolve_targets(*, session: Session, targets: list[PolicyTarget], at: datetime) -> ResolveTargetsResult:
    """Who `targets` page at `at`, in order, each (kind, id) once (the first wins); a target that reaches
    nobody (deleted since the freeze, empty group, nobody on call) is listed in `unresolved`, never raised."""
    recipients: list[Recipient] = []
    unresolved: list[str] = []
    seen: set[tuple[object, ...]] = set()
    for target in targets:
        found, problem = resolve_one(session, target, at)
        if problem:
            unresolved.append(problem)
        for r in found:
            key = (r.kind, r.id) if r.id is not None else (r.kind, r.email, r.phone, r.url)
            if key not in seen:
                seen.add(key)
                recipients.append(r)
    return ResolveTargetsResult(recipients=recipients, unresolved=unresolved)


# --- references ---------------------------------------------------------------------------------


def policy_referrers(*, session: Session, kind: TargetKind, id: int) -> list[str]:
    """Every policy step that targets the row, as `escalation policy 'x' step 2` / `... manager step`."""
    found = []
    for policy in session.scalars(select(EscalationPolicyRow).order_by(EscalationPolicyRow.id)):
        steps = [(f"step {i + 1}", s) for i, s in enumerate(policy.steps)] + (
            [("manager step", policy.manager)] if policy.manager else []
        )
        for where, step in steps:
            if any(t["kind"] == kind.value and t.get("id") == id for t in step["targets"]):
                found.append(f"escalation policy {policy.name!r} {where}")
    return found


def user_referrers(*, session: Session, user_id: int, now: datetime) -> list[str]:
    """What keeps a user from being deleted: policies, contact groups, schedules, current or future overrides."""
    groups = session.scalars(
        select(ContactGroup.name).join(ContactGroupMember).where(ContactGroupMember.user_id == user_id).distinct()
    )
    schedules = session.scalars(
        select(Schedule.name).join(ScheduleParticipant).where(ScheduleParticipant.user_id == user_id).distinct()
    )
    overridden = session.scalars(
        select(Schedule.name).join(ScheduleOverride)
        .where(ScheduleOverride.user_id == user_id, ScheduleOverride.ends_at > now).distinct()
    )
    return [
        *policy_referrers(session=session, kind=TargetKind.user, id=user_id),
        *(f"contact group {name!r}" for name in sorted(groups)),
        *(f"schedule {name!r}" for name in sorted(schedules)),
        *(f"an override of schedule {name!r}" for name in sorted(overridden)),
    ]
