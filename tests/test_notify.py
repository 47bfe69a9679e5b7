"""send_notification across retries, with real SMTP and the real database: a retry of an email whose send was
recorded is not sent again (unless the database cannot tell), one page keeps one Message-ID whichever attempt
sends it, an attempt lost mid-send is closed as `lost`, and the activity heartbeats while SMTP blocks."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.channels import message_id
from activities.notify import NotifyActivities
from tests.conftest import Inbox, free_port
from tests.flows import attempts
from tests.helpers import eventually
from vigil.bootstrap import create_integration
from vigil.contracts import Channel, NotifyInput, Recipient, Severity, TargetKind
from vigil.db import create_db_engine, session_factory
from vigil.models import Incident, Integration, NotificationAttempt, utcnow
from vigil.settings import Settings, SmtpSettings
from worker import build_notify


@pytest.fixture
def number(sessions: sessionmaker[Session]) -> int:
    """An incident row for the notification log to refer to."""
    with sessions.begin() as session:
        create_integration(session, name="notify-test")
        integration = session.scalars(select(Integration).where(Integration.name == "notify-test")).one()
        incident = Incident(
            group_key="notify", integration_id=integration.id, service="checkout", severity="critical",
            title="High error rate", status="triggered",
        )
        session.add(incident)
        session.flush()
        return incident.number


def page(number: int, who: str = "oncall@example.com") -> NotifyInput:
    return NotifyInput(
        number=number, title="High error rate", severity=Severity.critical, service="checkout",
        step_name="email on-call", channel=Channel.email,
        recipient=Recipient(kind=TargetKind.contact, name="on-call", email=who),
        step_index=0, ladder_round=0, idempotency_key=f"INC-{number}/r0s0/email/{who}",
        incident_url=f"http://vigil.test/incidents/INC-{number}", temporal_url="http://temporal.test/",
    )


def attempt(n: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env


@pytest.fixture
def notify(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[NotifyActivities]:
    activities = build_notify(settings, sessions)
    yield activities
    activities.close()


def log(sessions: sessionmaker[Session], number: int) -> list[tuple[int, str]]:
    return [(a.attempt, a.status) for a in attempts(sessions, number)]


def test_a_retry_of_a_recorded_email_is_not_sent_again(
    notify: NotifyActivities, number: int, inbox: Inbox, sessions: sessionmaker[Session], settings: Settings,
) -> None:
    first = attempt(1).run(notify.send_notification, page(number))
    # The worker died after recording the send but before Temporal heard back: Temporal runs attempt 2.
    second = attempt(2).run(notify.send_notification, page(number))

    [email] = inbox.for_incident(number)
    assert second.provider_message_id == first.provider_message_id == email["Message-ID"]
    assert email["Message-ID"] == message_id(page(number).idempotency_key, settings.smtp.from_addr)
    assert log(sessions, number) == [(1, "sent")]


def test_a_lost_attempt_is_retried_with_the_same_message_id_and_closed_as_lost(
    notify: NotifyActivities, number: int, inbox: Inbox, sessions: sessionmaker[Session],
) -> None:
    first = attempt(1).run(notify.send_notification, page(number))
    with sessions.begin() as session:  # as a worker killed after SMTP accepted it, before it recorded it
        row = session.get_one(NotificationAttempt, attempts(sessions, number)[0].id)
        row.status, row.finished_at, row.provider_message_id = "sending", None, None
        row.receipt, row.receipt_at = "delivered", utcnow()  # a receipt that raced the retry

    second = attempt(2).run(notify.send_notification, page(number))

    # Sent twice (nothing said it went out), but as one message to mail clients: the same Message-ID.
    assert [m["Message-ID"] for m in inbox.for_incident(number)] == [first.provider_message_id] * 2
    assert second.provider_message_id == first.provider_message_id
    rows = attempts(sessions, number)
    assert [(a.attempt, a.status, a.receipt) for a in rows] == [(1, "lost", None), (2, "sent", "delivered")]
    assert rows[0].finished_at is not None and "retried as attempt 2" in (rows[0].error or "")


def test_the_recorded_send_check_never_stops_a_page_when_the_database_is_down(
    settings: Settings, number: int, inbox: Inbox, tmp_path: Path,
) -> None:
    down = create_db_engine(f"sqlite:///{tmp_path}/missing/dir/vigil.db")  # every connection fails
    activities = build_notify(settings, session_factory(down))
    try:
        result = attempt(2).run(activities.send_notification, page(number))
    finally:
        activities.close()
        down.dispose()
    [email] = inbox.for_incident(number)
    assert result.status == "sent" and email["Message-ID"] == result.provider_message_id


class GatedInbox:
    """An SMTP server that keeps each message but answers DATA only once the test opens the gate."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.gate = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        await asyncio.to_thread(self.gate.wait, 60)
        return "250 OK"


async def test_send_heartbeats_while_smtp_blocks(
    settings: Settings, sessions: sessionmaker[Session], number: int,
) -> None:
    smtp = GatedInbox()
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    controller.start()
    activities = build_notify(
        settings.model_copy(update={"smtp": SmtpSettings(host="127.0.0.1", port=controller.port, timeout_seconds=30)}),
        sessions,
    )
    beats: list[tuple] = []
    env = attempt(1)
    env.on_heartbeat = lambda *details: beats.append(details)
    try:
        sending = asyncio.create_task(asyncio.to_thread(env.run, activities.send_notification, page(number)))
        await eventually(lambda: len(smtp.messages) == 1)
        before = len(beats)
        # Blocked in SMTP, the activity still tells Temporal its worker is alive.
        await eventually(lambda: len(beats) >= before + 2, timeout=10)
        smtp.gate.set()
        result = await sending
    finally:
        smtp.gate.set()
        activities.close()
        controller.stop()
    assert result.status == "sent"
    assert log(sessions, number) == [(1, "sent")]
