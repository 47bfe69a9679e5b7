"""The notification activity: one attempt of one ladder step, logged in notification_attempts."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import EmailSender, PermanentDeliveryError, PhoneProvider, short_text
from activities.metrics import NOTIFICATIONS
from vigil.contracts import Channel, NotifyInput, NotifyResult
from vigil.logging import get_logger
from vigil.models import NotificationAttempt, utcnow

log = get_logger(__name__)


class NotifyActivities:
    def __init__(
        self, sessions: sessionmaker[Session], email: EmailSender, sms: PhoneProvider, ivr: PhoneProvider
    ) -> None:
        self.sessions = sessions
        self.email = email
        self.phones = {Channel.sms: sms, Channel.ivr: ivr}

    @activity.defn
    def send_notification(self, inp: NotifyInput) -> NotifyResult:
        """Deliver one step over its channel; every attempt is written before and after sending."""
        info = activity.info()
        attempt = info.attempt
        bound = log.bind(incident=f"INC-{inp.number}", workflow_id=info.workflow_id, attempt=attempt)
        provider = self.email.name if inp.step.channel == Channel.email else self.phones[inp.step.channel].name
        row_id = self._start(inp, attempt, provider)
        bound.info("notification started", channel=inp.step.channel.value, step=inp.step.name)
        try:
            if inp.step.channel == Channel.email:
                message_id = self.email.send(inp)
            else:
                message_id = self.phones[inp.step.channel].send(inp, short_text(inp))
        except PermanentDeliveryError as err:
            self._finish(inp, row_id, "failed", error=str(err))
            raise ApplicationError(str(err), type="PermanentDeliveryError", non_retryable=True) from err
        except OSError as err:  # connection refused, timeouts, SMTP transient errors
            self._finish(inp, row_id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        self._finish(inp, row_id, "sent", provider_message_id=message_id)
        return NotifyResult(status="sent", provider_message_id=message_id)

    def _start(self, inp: NotifyInput, attempt: int, provider: str) -> int | None:
        """Log the attempt; a DB outage costs the log entry, never the page."""
        try:
            return self._insert_attempt(inp, attempt, provider)
        except SQLAlchemyError as err:
            log.error("notification log unavailable; paging anyway", incident=f"INC-{inp.number}", error=str(err))
            return None

    def _insert_attempt(self, inp: NotifyInput, attempt: int, provider: str) -> int:
        with self.sessions.begin() as session:
            row = NotificationAttempt(
                incident_number=inp.number, idempotency_key=inp.idempotency_key, attempt=attempt,
                step=inp.step.name, channel=inp.step.channel.value, target=inp.step.target, provider=provider,
                status="sending", started_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    def _finish(
        self, inp: NotifyInput, row_id: int | None, status: str, *, provider_message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        NOTIFICATIONS.labels(channel=inp.step.channel.value, status=status).inc()
        log.info(
            "notification finished", incident=f"INC-{inp.number}", workflow_id=f"INC-{inp.number}",
            channel=inp.step.channel.value, status=status, provider_message_id=provider_message_id, error=error,
        )
        if row_id is None:
            return
        try:
            with self.sessions.begin() as session:
                row = session.get_one(NotificationAttempt, row_id)
                row.status, row.provider_message_id, row.error = status, provider_message_id, error
                row.finished_at = utcnow()
        except SQLAlchemyError as err:
            log.error("notification log unavailable", incident=f"INC-{inp.number}", error=str(err))
