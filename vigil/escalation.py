"""The default ladder and the small pure helpers the ladder needs (keys, masks, durations)."""

from __future__ import annotations

from datetime import timedelta

from vigil.contracts import Channel, EscalationPolicy, EscalationStep
from vigil.settings import EscalationSettings


def default_policy(settings: EscalationSettings) -> EscalationPolicy:
    """Email now -> SMS at +5m -> IVR at +10m -> manager at +15m (with the default 5m wait)."""
    wait = settings.step_wait_seconds
    return EscalationPolicy(
        name="default",
        steps=[
            EscalationStep(name="email on-call", channel=Channel.email, target=settings.oncall_email, wait_seconds=wait),
            EscalationStep(name="sms on-call", channel=Channel.sms, target=settings.oncall_phone, wait_seconds=wait),
            EscalationStep(name="ivr on-call", channel=Channel.ivr, target=settings.oncall_phone, wait_seconds=wait),
            EscalationStep(name="email manager", channel=Channel.email, target=settings.manager_email, wait_seconds=0),
        ],
    )


def idempotency_key(number: int, ladder_round: int, step_index: int, step: EscalationStep) -> str:
    """Stable across activity retries, so a provider that honours it never pages twice."""
    return f"INC-{number}/r{ladder_round}s{step_index}/{step.channel.value}/{step.target}"


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
