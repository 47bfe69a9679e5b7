"""Who is on an incident, as people read it: actor names, the assignee, the acknowledger, and until when it is quiet.

The workflow records actors as `kind:name` labels (history and the timeline keep that text); here they are
rendered for people: "alert source", not "source:alert source".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from vigil.contracts import ActorKind, IncidentState, IncidentStatus
from vigil.models import AckLinkUse, Incident, NotificationAttempt, ProviderCallback, TimelineEvent

# The workflow's timeline text for an assignment (workflows/incident/workflow.py `assign`).
ASSIGNED_KIND = "assigned"
ASSIGNED_PREFIX = "Assigned to "
MASKED = "…"  # vigil.escalation.mask_target's mark


class TimelineEntry(Protocol):
    kind: str
    message: str


def display_actor(label: str | None) -> str | None:
    """`source:alert source` -> `alert source`; `user:rita@test` -> `rita@test`; `jira:Jane` -> `Jane (Jira)`."""
    if label is None:
        return None
    kind, sep, name = label.partition(":")
    if not sep or kind not in {k.value for k in ActorKind}:
        return label  # not a label (older text): shown as it is
    if kind == ActorKind.jira.value:
        return f"{name} (Jira)"
    if kind == ActorKind.system.value and name == "jira":
        return "Jira"
    return name


def assignees(session: Session, numbers: Iterable[int]) -> dict[int, str]:
    """Each incident's assignee, from its newest `assigned` timeline entry (unassigned ones are left out)."""
    latest = _latest_assignment().where(TimelineEvent.incident_number.in_(list(numbers)))
    out: dict[int, str] = {}
    for number, message in session.execute(latest):
        if message.startswith(ASSIGNED_PREFIX):
            out[number] = message.removeprefix(ASSIGNED_PREFIX)
    return out


def assignee_in(timeline: Sequence[TimelineEntry]) -> str | None:
    """The assignee of one incident read from its timeline (by seq): its newest `assigned` entry, as `assignees`."""
    for entry in reversed(timeline):
        if entry.kind == ASSIGNED_KIND:
            return entry.message.removeprefix(ASSIGNED_PREFIX) if entry.message.startswith(ASSIGNED_PREFIX) else None
    return None


def assigned_to(assignee: str) -> ColumnElement[bool]:
    """Incidents whose newest assignment names `assignee`."""
    owned = _latest_assignment().subquery()
    return Incident.number.in_(
        select(owned.c.incident_number).where(owned.c.message == f"{ASSIGNED_PREFIX}{assignee}")
    )


def _latest_assignment():  # noqa: ANN202 - a Select of (incident_number, message)
    newest = (
        select(TimelineEvent.incident_number, func.max(TimelineEvent.seq).label("seq"))
        .where(TimelineEvent.kind == ASSIGNED_KIND)
        .group_by(TimelineEvent.incident_number)
        .subquery()
    )
    return select(TimelineEvent.incident_number, TimelineEvent.message).join(
        newest, and_(TimelineEvent.incident_number == newest.c.incident_number, TimelineEvent.seq == newest.c.seq)
    )


def unmasked_acknowledger(session: Session, number: int, label: str | None) -> str | None:
    """The acknowledger with the address that acknowledged from an email link, SMS reply or IVR keypress, which
    the workflow keeps masked (its history is readable in the Temporal UI); for roles that may see contacts."""
    shown = display_actor(label)
    if shown is None or MASKED not in shown:
        return shown
    address = None
    if shown.endswith("(email link)"):
        address = session.scalar(
            select(AckLinkUse.recipient).where(AckLinkUse.incident_number == number)
            .order_by(AckLinkUse.used_at.desc()).limit(1)
        )
    elif shown.endswith("(SMS reply)") or shown.endswith("(IVR keypress)"):
        kind = "sms_reply" if shown.endswith("(SMS reply)") else "ivr_keypress"
        body = session.scalar(
            select(ProviderCallback.body)
            .where(ProviderCallback.incident_number == number, ProviderCallback.type == kind,
                   ProviderCallback.outcome == "acknowledged")
            .order_by(ProviderCallback.id.desc()).limit(1)
        ) or {}
        address = body.get("from") if kind == "sms_reply" else session.scalar(
            select(NotificationAttempt.target)
            .where(NotificationAttempt.incident_number == number,
                   NotificationAttempt.provider_message_id == body.get("message_id"))
            .limit(1)
        )
    if not address:
        return shown
    return f"{address} {shown[shown.rindex('('):]}"


def quiet_until(live: IncidentState | None) -> tuple[datetime | None, datetime | None]:
    """(retriggers_at, snoozed_until) of an acknowledged incident: it re-triggers at the policy's ack timeout or
    at the end of a snooze; a re-trigger time other than ack time + ack timeout is a snooze's."""
    if live is None or live.status != IncidentStatus.acknowledged or live.retrigger_at is None:
        return None, None
    timeout = live.plan.ack_timeout_seconds if live.plan is not None else 0
    from_ack = live.acknowledged_at + timedelta(seconds=timeout) if live.acknowledged_at and timeout else None
    return live.retrigger_at, (None if live.retrigger_at == from_ack else live.retrigger_at)
