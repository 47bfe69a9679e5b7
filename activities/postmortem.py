"""The postmortem activities: open it when the incident resolves, refresh its draft, remind people by email."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.channels import EmailSender, PermanentDeliveryError, message_id
from vigil.contracts import (
    ActorKind, DraftPostmortemInput, OpenPostmortemInput, PostmortemPlan, PostmortemProgress, RemindPostmortemInput,
    RemindPostmortemResult, incident_ref,
)
from vigil.escalation import mask_target
from vigil.logging import get_logger
from vigil.models import NotificationAttempt, User, utcnow
from vigil.rca import postmortems
from vigil.rca.figures import REMINDER_STEP
from vigil.settings import EscalationSettings, RcaSettings

log = get_logger(__name__)
HOUR = 3600


def reminder_key(number: int, reminder: int, recipient: str) -> str:
    """The same on every retry of one reminder to one person: its Message-ID and its recorded send."""
    return f"{incident_ref(number)}/postmortem/reminder{reminder}/email/{recipient}"


class PostmortemActivities:
    def __init__(
        self, sessions: sessionmaker[Session], rca: RcaSettings, escalation: EscalationSettings, email: EmailSender,
        public_url: str,
    ) -> None:
        self.sessions, self.rca, self.escalation, self.email = sessions, rca, escalation, email
        self.public_url = public_url.rstrip("/")

    def url(self, number: int) -> str:
        return f"{self.public_url}/api/v1/incidents/{incident_ref(number)}/postmortem"

    @activity.defn(no_thread_cancel_exception=True)
    def open_postmortem(self, inp: OpenPostmortemInput) -> PostmortemPlan:
        """Whether the severity needs a postmortem; if so, its document from the template (idempotent)."""
        if inp.severity not in self.rca.severities:
            return PostmortemPlan(required=False)
        with self.sessions.begin() as session:
            postmortems.open_postmortem(session, number=inp.number)
        return PostmortemPlan(
            required=True,
            remind_after_seconds=round(self.rca.remind_after_hours * HOUR),
            remind_every_seconds=round(self.rca.remind_every_hours * HOUR),
            manager_after_reminders=self.rca.manager_after_reminders,
            url=self.url(inp.number),
        )

    @activity.defn(no_thread_cancel_exception=True)
    def draft_postmortem(self, inp: DraftPostmortemInput) -> PostmortemProgress:
        """Fill or refresh the generated sections from the incident; edited sections stay as people wrote them."""
        with self.sessions.begin() as session:
            return postmortems.refresh_draft(session, number=inp.number)

    @activity.defn(no_thread_cancel_exception=True)
    def remind_postmortem(self, inp: RemindPostmortemInput) -> RemindPostmortemResult:
        """Email the reminder to whoever owns the postmortem (and the manager); once per reminder, retries included."""
        with self.sessions() as session:
            recipients = self._recipients(session, inp)
        if not recipients:
            log.warning("postmortem reminder: nobody to remind", incident=incident_ref(inp.number))
            return RemindPostmortemResult(status="skipped")
        errors = [err for to in recipients if (err := self._send_once(inp, to)) is not None]
        masked = [mask_target(to) for to in recipients]
        if errors:
            return RemindPostmortemResult(status="failed", recipients=masked, error="; ".join(errors))
        return RemindPostmortemResult(status="sent", recipients=masked)

    def _recipients(self, session: Session, inp: RemindPostmortemInput) -> list[str]:
        """The assignee, else whoever acknowledged (a user's email), else the on-call; plus the manager."""
        owner = inp.assignee or self._acknowledger_email(session, inp.acknowledged_by) or self.escalation.oncall_email
        found = [owner] if owner else []
        if inp.to_manager and self.escalation.manager_email:
            found.append(self.escalation.manager_email)
        return list(dict.fromkeys(found))

    @staticmethod
    def _acknowledger_email(session: Session, label: str | None) -> str | None:
        # Labels read `user:alice@example.com` or `user:alice@example.com (sms)` (vigil.contracts.Actor.label).
        if not label or not label.startswith(f"{ActorKind.user.value}:"):
            return None
        name = label.partition(":")[2].split(" (", 1)[0].strip()
        return session.scalar(select(User.email).where(User.email == name).limit(1))

    def _send_once(self, inp: RemindPostmortemInput, to: str) -> str | None:
        """Send unless this reminder to `to` is recorded as sent; None when sent, else the permanent error."""
        key = reminder_key(inp.number, inp.reminder, to)
        with self.sessions() as session:
            sent = session.scalar(select(NotificationAttempt.id).where(
                NotificationAttempt.idempotency_key == key, NotificationAttempt.status == "sent").limit(1))
        if sent is not None:
            log.info("postmortem reminder already sent; not sending again", incident=incident_ref(inp.number), key=key)
            return None
        with self.sessions.begin() as session:
            row = NotificationAttempt(
                incident_number=inp.number, idempotency_key=key, attempt=activity.info().attempt,
                step=REMINDER_STEP, channel="email", target=to[:320], provider=self.email.name, status="sending",
                started_at=utcnow(),
            )
            session.add(row)
        try:
            provider_id = self.email.deliver(self._message(inp, to, key), number=inp.number)
        except PermanentDeliveryError as err:
            self._finish(row.id, "failed", error=str(err))
            return f"{mask_target(to)}: {err}"
        except OSError as err:  # connection refused, timeouts: Temporal retries with the same key
            self._finish(row.id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        self._finish(row.id, "sent", provider_message_id=provider_id)
        return None

    def _finish(self, row_id: int, status: str, *, provider_message_id: str | None = None,
                error: str | None = None) -> None:
        with self.sessions.begin() as session:
            row = session.get_one(NotificationAttempt, row_id)
            row.status, row.provider_message_id, row.error, row.finished_at = status, provider_message_id, error, utcnow()

    def _message(self, inp: RemindPostmortemInput, to: str, key: str) -> EmailMessage:
        ref = incident_ref(inp.number)
        url = inp.url or self.url(inp.number)
        msg = EmailMessage()
        msg["Subject"] = f"[Vigil] {ref} postmortem reminder {inp.reminder}: {inp.title}"
        msg["From"] = self.email.settings.from_addr
        msg["To"] = to
        msg["Message-ID"] = message_id(key, self.email.settings.from_addr)
        msg["X-Vigil-Incident"] = ref
        msg["X-Vigil-Idempotency-Key"] = key
        manager = " You are receiving it as the escalation manager." if to == self.escalation.manager_email else ""
        msg.set_content(
            f"The postmortem of {ref} ({inp.title}) is not complete yet.{manager}\n\n"
            f"Read and edit it: {url}\n"
            f"When it is written, mark it complete: POST {url}/complete\n\n"
            f"This is reminder {inp.reminder}; reminders stop when the postmortem is complete.\n"
        )
        return msg
