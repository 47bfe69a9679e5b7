"""Handoff notices: when a schedule next hands off to someone, and the email that tells the incoming on-call."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.channels import EmailSender, PermanentDeliveryError, message_id
from vigil.contracts import HandoffNotice, HandoffNoticeResult, HandoffPlan, HandoffPlanInput
from vigil.logging import get_logger
from vigil.models import Schedule, User
from vigil.oncall import next_change, oncall_in_layers
from vigil.schedules import layers_of, overrides_of

log = get_logger(__name__)
SHIFT_END_HORIZON = timedelta(days=92)


def handoff_key(schedule_id: int, at: datetime) -> str:
    """One notice per (schedule, shift start): its Message-ID, the same on every retry."""
    return f"handoff/{schedule_id}/{at:%Y%m%dT%H%M%S.%fZ}"


def _local(at: datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%a %d %b %Y %H:%M %Z")


class HandoffActivities:
    def __init__(self, sessions: sessionmaker[Session], email: EmailSender, public_url: str) -> None:
        self.sessions = sessions
        self.email = email
        self.public_url = public_url.rstrip("/")

    @activity.defn(no_thread_cancel_exception=True)
    def plan_handoff(self, inp: HandoffPlanInput) -> HandoffPlan:
        """The schedule's next handoff to someone after `inp.after`, within the horizon (None past it)."""
        horizon = timedelta(seconds=inp.horizon_seconds)
        with self.sessions() as session:
            row = session.get(Schedule, inp.schedule_id)
            if row is None:
                return HandoffPlan(exists=False)
            layers = layers_of(row)
            overrides = overrides_of(session, row.id, inp.after, inp.after + horizon)
        at = inp.after
        # A change to nobody (a gap) is no handoff: look on to the next change.
        while (at := next_change(layers, overrides, at, inp.after + horizon - at)) is not None:
            found = oncall_in_layers(layers, overrides, at)
            if found is not None:
                return HandoffPlan(at=at, user_id=found.user_id)
        return HandoffPlan()

    @activity.defn(no_thread_cancel_exception=True)
    def notify_handoff(self, inp: HandoffNotice) -> HandoffNoticeResult:
        """Email whoever takes over at `inp.at`, if the schedule still hands off to them then."""
        with self.sessions() as session:
            row = session.get(Schedule, inp.schedule_id)
            if row is None:
                return HandoffNoticeResult(sent=False, skipped="the schedule was deleted")
            layers = layers_of(row)
            overrides = overrides_of(session, row.id, inp.at - timedelta(seconds=1), inp.at + SHIFT_END_HORIZON)
            incoming = oncall_in_layers(layers, overrides, inp.at)
            outgoing = oncall_in_layers(layers, overrides, inp.at - timedelta(microseconds=1))
            if incoming is None or (outgoing is not None and outgoing.user_id == incoming.user_id):
                return HandoffNoticeResult(sent=False, skipped="no handoff at this time (the schedule changed)")
            user = session.get(User, incoming.user_id)
            before = session.get(User, outgoing.user_id) if outgoing else None
            if user is None or not user.email:
                return HandoffNoticeResult(sent=False, user_id=incoming.user_id, skipped="no email address")
            until = next_change(layers, overrides, inp.at, SHIFT_END_HORIZON)
            msg = self._message(row, user, before, inp, until)
        try:
            sent = self.email.deliver(msg, number=0)
        except PermanentDeliveryError as err:  # refused by the server: a retry would be refused again
            log.warning("handoff email refused", schedule_id=inp.schedule_id, error=str(err))
            return HandoffNoticeResult(sent=False, user_id=user.id, skipped=f"refused: {err}")
        log.info("handoff email sent", schedule_id=inp.schedule_id, user_id=user.id, at=inp.at.isoformat())
        return HandoffNoticeResult(sent=True, user_id=user.id, message_id=sent)

    def _message(self, schedule: Schedule, user: User, before: User | None, inp: HandoffNotice,
                 until: datetime | None) -> EmailMessage:
        tz = user.timezone or "UTC"
        start, end = _local(inp.at, tz), (_local(until, tz) if until else "further notice")
        msg = EmailMessage()
        msg["Subject"] = f"[Vigil] You are on call for {schedule.name} from {start}"
        msg["From"] = self.email.settings.from_addr
        msg["To"] = user.email
        msg["Message-ID"] = message_id(handoff_key(schedule.id, inp.at), self.email.settings.from_addr)
        msg["X-Vigil-Schedule"] = str(schedule.id)
        msg["X-Vigil-Handoff"] = inp.at.isoformat()
        msg.set_content(
            f"Hello {user.name},\n\n"
            f"You are on call for {schedule.name} from {start} until {end}.\n"
            f"You take over from {before.name if before else 'nobody'}.\n\n"
            f"Who is on call: {self.public_url}/api/v1/schedules/{schedule.id}/oncall\n"
        )
        return msg
