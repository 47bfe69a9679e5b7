"""The notification activity: one page of one ladder step over one channel, logged in notification_attempts."""

from __future__ import annotations

import contextvars
import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.channels import EmailSender, short_text
from activities.metrics import NOTIFICATIONS
from vigil.alert_context import AlertContext, load_contexts, openable
from vigil.contracts import Channel, NotifyInput, NotifyResult
from vigil.logging import get_logger
from vigil.models import NotificationAttempt, Webhook, utcnow
from vigil.providers import OutboundMessage, PermanentDeliveryError, PhoneProvider, TransientDeliveryError
from vigil.providers.acklinks import make_token
from vigil.providers.webhook import WebhookIncident, WebhookMessage, WebhookSender
from vigil.viewlinks import VIEW_TTL, make_view_token
from vigil.contracts import incident_ref, workflow_id

log = get_logger(__name__)
# The workflow's heartbeat timeout for a page (workflows/ladder.py) is several of these: a live worker is never
# mistaken for a dead one, and a dead worker's page is retried seconds after its last beat.
HEARTBEAT_EVERY_SECONDS = 1.0


class _Beats:
    """One helper thread heartbeats every page being sent, instead of a thread started per page (whose start
    and stop were a noticeable part of the worker's CPU in a burst of pages)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._sending: dict[int, contextvars.Context] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, ctx: contextvars.Context) -> int:
        with self._lock:
            key = next(self._keys)
            self._sending[key] = ctx
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="notify-heartbeats", daemon=True)
                self._thread.start()
        return key

    def remove(self, key: int) -> None:
        with self._lock:  # waits out a pass in progress: no beat for this page after it returns
            self._sending.pop(key, None)

    def _run(self) -> None:
        pause = threading.Event()
        while not pause.wait(self.every):
            missed: list[BaseException] = []
            with self._lock:  # held only to beat (a non-blocking hand-off to the event loop), never to log
                for ctx in self._sending.values():
                    try:
                        ctx.run(activity.heartbeat)
                    except (TimeoutError, RuntimeError) as err:  # a busy or closing event loop: next beat
                        missed.append(err)
            for err in missed:
                log.warning("notification heartbeat not sent", error=repr(err))


_BEATS = _Beats(HEARTBEAT_EVERY_SECONDS)


@contextmanager
def heartbeating() -> Iterator[None]:
    """Heartbeat (about every second) while the activity's thread blocks in a send (SMTP, HTTP)."""
    activity.heartbeat()
    # The activity context, so that activity.heartbeat works on the helper thread.
    key = _BEATS.add(contextvars.copy_context())
    try:
        yield
    finally:
        _BEATS.remove(key)


def _why_cancelled() -> str:
    """Why Temporal cancelled this attempt, for the notification log: an ack (or resolve) cancels the page; an
    attempt that missed its heartbeat timeout (an overloaded worker) or whose worker shuts down is retried."""
    details = activity.cancellation_details()
    if details is None or details.cancel_requested:
        return "acknowledged"
    if details.timed_out:
        return "timed out: retried"
    if details.worker_shutdown:
        return "worker shutting down: retried"
    return "cancelled by Temporal"


@dataclass(frozen=True)
class Links:
    """Where people and providers reach Vigil back: the one-click ack link and the provider callback URL."""

    public_url: str
    ack_secret: bytes
    ack_ttl: timedelta
    callback_url: str | None  # None: the console adapters, which never call back

    def ack_url(self, number: int, recipient: str) -> str:
        token = make_token(
            self.ack_secret, number=number, recipient=recipient, expires_at=utcnow() + self.ack_ttl,
            nonce=uuid.uuid4().hex,
        )
        return f"{self.public_url}/ack/{token}"

    def view_url(self, number: int, recipient: str) -> str:
        """The incident's read-only page for this recipient: a browser can open it without an API key."""
        token = make_view_token(self.ack_secret, number=number, recipient=recipient, expires_at=utcnow() + VIEW_TTL)
        return f"{self.public_url}/view/{token}"


class NotifyActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        email: EmailSender,
        phones: dict[Channel, PhoneProvider],
        webhook: WebhookSender,
        links: Links,
    ) -> None:
        self.sessions = sessions
        self.email = email
        self.phones = phones
        self.webhook = webhook
        self.links = links

    def close(self) -> None:
        for provider in self.phones.values():
            provider.close()
        self.webhook.close()

    # Cancellation (an ack) is read at safe points, never raised into the thread mid-send or mid-log-write.
    @activity.defn(no_thread_cancel_exception=True)
    def send_notification(self, inp: NotifyInput) -> NotifyResult:
        """Deliver one page; every attempt is written before and after sending."""
        info = activity.info()
        channel = inp.target_channel
        bound = log.bind(incident=incident_ref(inp.number), workflow_id=info.workflow_id, attempt=info.attempt)
        with heartbeating():
            if info.attempt > 1 and (recorded := self._recorded_send(inp)) is not None:
                # The worker that sent it died before Temporal heard back: the page went out once already.
                bound.info("notification already sent; not sending again", channel=channel.value,
                           key=inp.idempotency_key, provider_message_id=recorded[0])
                return NotifyResult(status="sent", provider_message_id=recorded[0])
            row_id = self._start(inp, info.attempt, self._provider_name(channel))
            if activity.is_cancelled():
                self._finish(inp, row_id, "cancelled", error=f"cancelled before sending ({_why_cancelled()})")
                raise CancelledError("cancelled before sending")
            bound.info("notification started", channel=channel.value, step=inp.label, call=inp.call)
            try:
                message_id = self._send(inp, channel)
            except PermanentDeliveryError as err:
                self._finish(inp, row_id, "failed", error=str(err))
                raise ApplicationError(str(err), type="PermanentDeliveryError", non_retryable=True) from err
            except TransientDeliveryError as err:
                self._finish(inp, row_id, "failed", error=str(err))
                delay = timedelta(seconds=err.retry_after_seconds) if err.retry_after_seconds else None
                raise ApplicationError(str(err), type="TransientDeliveryError", next_retry_delay=delay) from err
            except OSError as err:  # connection refused, timeouts, SMTP transient errors
                self._finish(inp, row_id, "failed", error=f"{type(err).__name__}: {err}")
                raise
            self._finish(inp, row_id, "sent", provider_message_id=message_id)
        return NotifyResult(status="sent", provider_message_id=message_id)

    def _provider_name(self, channel: Channel) -> str:
        if channel == Channel.email:
            return self.email.name
        if channel == Channel.webhook:
            return self.webhook.name
        return self.phones[channel].name

    def _send(self, inp: NotifyInput, channel: Channel) -> str:
        if channel == Channel.email:
            return self.email.send(
                inp, ack_url=self.links.ack_url(inp.number, inp.address),
                view_url=self.links.view_url(inp.number, inp.address), contexts=self._contexts(inp),
            )
        if channel == Channel.webhook:
            return self._send_webhook(inp)
        runbook = None
        if channel == Channel.sms and inp.alerts:
            runbook = next((c.runbook_url for c in self._contexts(inp).values() if openable(c.runbook_url)), None)
        message = OutboundMessage(
            channel=channel.value, to=inp.address, text=short_text(inp, runbook=runbook),
            idempotency_key=inp.idempotency_key,
            incident=incident_ref(inp.number), ack_code=str(inp.number), callback_url=self.links.callback_url,
        )
        return self.phones[channel].send(message).message_id

    def _send_webhook(self, inp: NotifyInput) -> str:
        # The URL and secret are read now, not frozen into the workflow: a secret never enters history.
        assert inp.recipient is not None and inp.recipient.id is not None
        with self.sessions() as session:
            hook = session.get(Webhook, inp.recipient.id)
            if hook is None:
                raise PermanentDeliveryError(f"webhook {inp.recipient.name} no longer exists")
            url, secret = hook.url, hook.secret
        incident = WebhookIncident(
            number=inp.number, title=inp.title, severity=inp.severity.value, service=inp.service,
            status="triggered", url=inp.incident_url, temporal_url=inp.temporal_url, step=inp.label,
        )
        message = WebhookMessage(
            url=url, secret=secret, idempotency_key=inp.idempotency_key, incident=incident,
            text=f"[Vigil] {incident_ref(inp.number)} {inp.severity.value.upper()} {inp.service}: {inp.title}",
        )
        return self.webhook.send(message).message_id

    def _contexts(self, inp: NotifyInput) -> dict[str, AlertContext]:
        """The digest's alert context (runbook, links, details), read from the database rather than carried in
        workflow history; a DB outage costs the context, never the page."""
        try:
            with self.sessions() as session:
                return load_contexts(session, number=inp.number, keys=[a.fingerprint for a in inp.alerts])
        except SQLAlchemyError as err:
            log.error("alert context unavailable; paging without it", incident=incident_ref(inp.number), error=str(err))
            return {}

    def _start(self, inp: NotifyInput, attempt: int, provider: str) -> int | None:
        """Log the attempt; a DB outage costs the log entry, never the page."""
        try:
            return self._insert_attempt(inp, attempt, provider)
        except SQLAlchemyError as err:
            log.error("notification log unavailable; paging anyway", incident=incident_ref(inp.number), error=str(err))
            return None

    def _recorded_send(self, inp: NotifyInput) -> tuple[str | None] | None:
        """(provider message id,) of an earlier attempt of this page recorded as sent, else None."""
        # None too when the log cannot be read: a DB outage costs the check, never the page.
        try:
            with self.sessions() as session:
                row = session.execute(
                    select(NotificationAttempt.provider_message_id)
                    .where(NotificationAttempt.idempotency_key == inp.idempotency_key,
                           NotificationAttempt.status == "sent")
                    .limit(1)
                ).first()
        except SQLAlchemyError as err:
            log.error("notification log unavailable; sending without the recorded-send check",
                      incident=incident_ref(inp.number), error=str(err))
            return None
        return None if row is None else (row.provider_message_id,)

    def _insert_attempt(self, inp: NotifyInput, attempt: int, provider: str) -> int:
        with self.sessions.begin() as session:
            if attempt > 1:
                # An earlier attempt still `sending` was never heard back from: its worker died mid-send.
                session.execute(
                    update(NotificationAttempt)
                    .where(NotificationAttempt.idempotency_key == inp.idempotency_key,
                           NotificationAttempt.status == "sending")
                    .values(status="lost", finished_at=utcnow(),
                            error=f"no answer from this attempt's worker; retried as attempt {attempt}")
                )
            return session.execute(
                insert(NotificationAttempt).values(
                    incident_number=inp.number, idempotency_key=inp.idempotency_key, attempt=attempt,
                    step=inp.label[:100], channel=inp.target_channel.value, target=inp.address[:320],
                    recipient=inp.recipient.name[:200] if inp.recipient else None, provider=provider,
                    status="sending", started_at=utcnow(),
                ).returning(NotificationAttempt.id)
            ).scalar_one()

    def _finish(
        self, inp: NotifyInput, row_id: int | None, status: str, *, provider_message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        NOTIFICATIONS.labels(channel=inp.target_channel.value, status=status).inc()
        log.info(
            "notification finished", incident=incident_ref(inp.number), workflow_id=workflow_id(inp.number),
            channel=inp.target_channel.value, status=status, provider_message_id=provider_message_id, error=error,
        )
        if row_id is None:
            return
        try:
            with self.sessions.begin() as session:
                session.execute(
                    update(NotificationAttempt).where(NotificationAttempt.id == row_id)
                    .values(status=status, provider_message_id=provider_message_id, error=error, finished_at=utcnow())
                )
                # Only a retried page has earlier attempts, whose receipt may belong to this one.
                if status == "sent" and activity.info().attempt > 1:
                    row = session.get_one(NotificationAttempt, row_id)
                    if row.receipt is None:
                        self._take_receipt(session, row)
        except SQLAlchemyError as err:
            log.error("notification log unavailable", incident=incident_ref(inp.number), error=str(err))

    @staticmethod
    def _take_receipt(session: Session, row: NotificationAttempt) -> None:
        """A receipt that reached a lost attempt of this page (same key) belongs to the attempt recorded as sent."""
        lost = session.scalar(
            select(NotificationAttempt)
            .where(NotificationAttempt.idempotency_key == row.idempotency_key, NotificationAttempt.id != row.id,
                   NotificationAttempt.status == "lost", NotificationAttempt.receipt.is_not(None))
            .order_by(NotificationAttempt.receipt_at.desc())
            .limit(1)
        )
        if lost is None:
            return
        row.receipt, row.receipt_at, row.receipt_error = lost.receipt, lost.receipt_at, lost.receipt_error
        lost.receipt = lost.receipt_at = lost.receipt_error = None
