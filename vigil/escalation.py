"""The default ladder and the small pure helpers the ladder needs (keys, masks, durations)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from vigil.contracts import (
    Channel,
    LegacyPolicy,
    LegacyStep,
    FrozenPolicy,
    PolicyStep,
    PolicyTarget,
    Recipient,
    ResolveTargetsResult,
    TargetKind,
)
from vigil.settings import EscalationSettings
from vigil.contracts import incident_ref


def legacy_default_policy(settings: EscalationSettings) -> LegacyPolicy:
    """The pre-policy fixed ladder: email now -> SMS at +5m -> IVR at +10m -> manager at +15m (replay only)."""
    wait = settings.step_wait_seconds
    return LegacyPolicy(
        name="default",
        steps=[
            LegacyStep(name="email on-call", channel=Channel.email, target=settings.oncall_email, wait_seconds=wait),
            LegacyStep(name="sms on-call", channel=Channel.sms, target=settings.oncall_phone, wait_seconds=wait),
            LegacyStep(name="ivr on-call", channel=Channel.ivr, target=settings.oncall_phone, wait_seconds=wait),
            LegacyStep(name="email manager", channel=Channel.email, target=settings.manager_email, wait_seconds=0),
        ],
    )


def default_plan(settings: EscalationSettings) -> FrozenPolicy:
    """The built-in ladder, for incidents no escalation route matches: the on-call contact from settings by
    email, then SMS, then a call, then the manager by email; each `step_wait_seconds` apart."""
    wait = settings.step_wait_seconds
    oncall = PolicyTarget(kind=TargetKind.contact, name="on-call", email=settings.oncall_email, phone=settings.oncall_phone)
    manager = PolicyTarget(
        kind=TargetKind.contact, name="manager", email=settings.manager_email, phone=settings.manager_phone
    )
    return FrozenPolicy(
        name="default",
        steps=[
            PolicyStep(name="email on-call", channels=[Channel.email], targets=[oncall], wait_seconds=wait),
            PolicyStep(name="sms on-call", channels=[Channel.sms], targets=[oncall], wait_seconds=wait),
            PolicyStep(name="ivr on-call", channels=[Channel.ivr], targets=[oncall], wait_seconds=wait),
        ],
        manager=PolicyStep(name="email manager", channels=[Channel.email], targets=[manager], wait_seconds=0),
        ack_timeout_seconds=settings.ack_timeout_seconds,
    )


def contact_recipient(target: PolicyTarget) -> Recipient:
    """A `contact` target needs no lookup: it carries its own addresses."""
    return Recipient(
        kind=TargetKind.contact, name=target.name or target.email or target.phone or "contact",
        email=target.email, phone=target.phone, via=f"contact {target.name}".strip(),
    )


def delivery_key(number: int, ladder_round: int, rung: int, channel: Channel, recipient: Recipient) -> str:
    """`INC-n/r<round>s<rung>/<channel>/<who>`: one page of one rung; stable across activity retries and worker
    crashes, so a provider that honours the key never pages twice. An IVR retry appends `/call<n>`."""
    who = f"{recipient.kind.value}:{recipient.id}" if recipient.id is not None else recipient.address(channel)
    return f"{incident_ref(number)}/r{ladder_round}s{rung}/{channel.value}/{who}"


def legacy_idempotency_key(number: int, ladder_round: int, step_index: int, step: LegacyStep) -> str:
    """The pre-policy ladder's page key: stable across activity retries, so a provider that honours it never
    pages twice."""
    return f"{incident_ref(number)}/r{ladder_round}s{step_index}/{step.channel.value}/{step.target}"


def mask_target(target: str) -> str:
    """What the Temporal UI may show: `+1555…100`, `alice@…`. Search attributes never hold personal data."""
    if "@" in target:
        local, _, _domain = target.partition("@")
        return f"{local[:5]}@…"
    if len(target) > 8:
        return f"{target[:5]}…{target[-3:]}"
    return "…"


def human_duration(delta: timedelta) -> str:
    """`5m`, `1h30m`, `45s`."""
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"


# --- which (recipient, channel) pairs a step pages, and when: shared by the ladder and the preview ------


def reaches(channel: Channel, recipient: Recipient) -> bool:
    """Email needs an email address, SMS and IVR a phone number; a webhook is reached by `webhook` only."""
    if recipient.kind == TargetKind.webhook:
        return channel == Channel.webhook and bool(recipient.url)
    if channel == Channel.email:
        return bool(recipient.email)
    if channel in (Channel.sms, Channel.ivr):
        return bool(recipient.phone)
    return False


def can_reach(channel: Channel, kind: TargetKind) -> bool:
    """Whether `channel` can ever reach a target of `kind` (what a policy is checked against when saved)."""
    return (channel == Channel.webhook) == (kind == TargetKind.webhook)


def deliveries(step: PolicyStep, recipients: list[Recipient]) -> list[tuple[Recipient, Channel]]:
    """Every page a step sends: recipients in order, each over the step's channels (in order) that reach it."""
    return [(r, c) for r in recipients for c in step.channels if reaches(c, r)]


@dataclass(frozen=True)
class Rung:
    """One step as the ladder runs it: `round` 0 is the first pass, 1 the first repeat; the manager step
    comes last, with `index` = len(steps)."""

    round: int
    index: int
    step: PolicyStep
    offset_seconds: int  # from the incident's start, if nobody acknowledges
    manager: bool = False


def rungs(policy: FrozenPolicy) -> list[Rung]:
    """`steps` × (1 + repeat), then `manager`. Each step's wait comes after it, before the next rung, so the
    manager step follows the last step of the last round by that step's wait (default ladder: +15 min)."""
    out: list[Rung] = []
    offset = 0
    for round_ in range(policy.repeat + 1):
        for index, step in enumerate(policy.steps):
            out.append(Rung(round=round_, index=index, step=step, offset_seconds=offset))
            offset += step.wait_seconds
    if policy.manager is not None:
        out.append(Rung(round=policy.repeat, index=len(policy.steps), step=policy.manager, offset_seconds=offset,
                        manager=True))
    return out


Resolver = Callable[[list[PolicyTarget], datetime], ResolveTargetsResult]


@dataclass(frozen=True)
class PlannedRung:
    rung: Rung
    at: datetime
    recipients: list[Recipient]
    pages: list[tuple[Recipient, Channel]]
    unresolved: list[str]


def plan(policy: FrozenPolicy, start: datetime, resolve: Resolver) -> list[PlannedRung]:
    """The whole ladder if nobody acknowledges, each rung's targets resolved at that rung's own time (so a
    schedule handing off mid-ladder pages the new person)."""
    planned = []
    for rung in rungs(policy):
        at = start + timedelta(seconds=rung.offset_seconds)
        resolved = resolve(rung.step.targets, at)
        pages = deliveries(rung.step, resolved.recipients)
        planned.append(PlannedRung(rung, at, resolved.recipients, pages, list(resolved.unresolved)))
    return planned
