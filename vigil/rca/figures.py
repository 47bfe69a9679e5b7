"""The incident's figures: time to acknowledge and resolve, pages, people, highest step, reopens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.models import Incident, NotificationAttempt, TimelineEvent

# The ladder's idempotency keys read INC-<n>/r<round>s<step>/<channel>/<who> (vigil.escalation).
STEP_IN_KEY = re.compile(r"/r\d+s(\d+)/")
# Postmortem reminders are logged with the pages (one email log) but are not pages.
REMINDER_STEP = "postmortem reminder"


@dataclass(frozen=True)
class Figures:
    time_to_acknowledge: timedelta | None
    time_to_resolve: timedelta | None
    pages_sent: int
    people_paged: int
    highest_step: int | None  # 1-based rung of the ladder; None: nothing was paged
    highest_step_name: str | None
    reopen_count: int


def incident_figures(session: Session, number: int) -> Figures:
    """Read from incidents, timeline_events and notification_attempts."""
    incident = session.get_one(Incident, number)
    # The first acknowledgement counts, not the last one after a reopen: how long the first page waited.
    first_ack = session.scalar(
        select(func.min(TimelineEvent.at)).where(TimelineEvent.incident_number == number,
                                                 TimelineEvent.kind == "acknowledged")
    ) or incident.acknowledged_at
    sent = session.execute(
        select(NotificationAttempt.idempotency_key, NotificationAttempt.recipient, NotificationAttempt.target)
        .where(NotificationAttempt.incident_number == number, NotificationAttempt.status == "sent",
               NotificationAttempt.step != REMINDER_STEP)
    ).all()
    steps = session.execute(
        select(NotificationAttempt.idempotency_key, NotificationAttempt.step)
        .where(NotificationAttempt.incident_number == number)
    ).all()
    reached = [(int(m.group(1)), name) for key, name in steps if (m := STEP_IN_KEY.search(key))]
    top = max(reached, default=None)
    return Figures(
        time_to_acknowledge=first_ack - incident.created_at if first_ack else None,
        time_to_resolve=incident.resolved_at - incident.created_at if incident.resolved_at else None,
        pages_sent=len({key for key, _, _ in sent}),
        people_paged=len({recipient or target for _, recipient, target in sent}),
        highest_step=top[0] + 1 if top else None,
        highest_step_name=top[1] if top else None,
        reopen_count=incident.reopen_count,
    )


def human(delta: timedelta | None) -> str:
    """`1h 04m 05s`, `4m 05s`, `12s`; an em dash for none."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s" if m else f"{s}s"
