"""What provider callbacks and acknowledge links do to the DB and to the incident workflow."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import counted
from api.providers.schemas import CallbackResult
from client.errors import TransitionRefused
from client.incidents import IncidentClient
from vigil.contracts import AcknowledgeInput, Actor, ActorKind, Channel, incident_ref
from vigil.escalation import mask_target
from vigil.models import NotificationAttempt, User, utcnow
from vigil.models import ProviderCallback as CallbackRow
from vigil.providers.callbacks import ProviderCallback


def seen(sessions: sessionmaker[Session], provider: str, event_id: str) -> bool:
    with sessions() as session:
        return session.scalar(
            select(CallbackRow.id).where(CallbackRow.provider == provider, CallbackRow.event_id == event_id)
        ) is not None


def record(
    sessions: sessionmaker[Session], provider: str, event: ProviderCallback, incident: str | None, outcome: str,
    body: bytes,
) -> None:
    """Remember the event (a concurrent duplicate that got here first wins; both acted idempotently)."""
    number = int(incident.removeprefix("INC-")) if incident else None
    try:
        with sessions.begin() as session:
            session.add(CallbackRow(
                provider=provider, event_id=event.event_id, type=event.type.value, incident_number=number,
                outcome=outcome[:200], body=event.model_dump(mode="json", by_alias=True), received_at=utcnow(),
            ))
    except IntegrityError:
        pass


def find_page(sessions: sessionmaker[Session], event: ProviderCallback) -> NotificationAttempt | None:
    """The notification the event is about: by idempotency key if given, else by the provider's message id."""
    with sessions() as session:
        query = select(NotificationAttempt).order_by(NotificationAttempt.id.desc()).limit(1)
        if event.idempotency_key:
            query = query.where(NotificationAttempt.idempotency_key == event.idempotency_key)
        else:
            query = query.where(NotificationAttempt.provider_message_id == event.message_id)
        return session.scalar(query)


IN_FLIGHT = timedelta(minutes=2)  # past this, a send still `sending` is lost, not in flight (the reconciler)


def send_in_flight(sessions: sessionmaker[Session], provider: str) -> bool:
    """Whether a send through `provider` started recently and has no recorded outcome yet."""
    with sessions() as session:
        return session.scalar(
            select(NotificationAttempt.id).where(
                NotificationAttempt.provider == provider, NotificationAttempt.status == "sending",
                NotificationAttempt.started_at > utcnow() - IN_FLIGHT,
            ).limit(1)
        ) is not None


def record_receipt(sessions: sessionmaker[Session], event: ProviderCallback) -> tuple[int, str] | None:
    """Write the receipt on the notification's log row; its incident and idempotency key, if found."""
    page = find_page(sessions, event)
    if page is None:
        return None
    with sessions.begin() as session:
        row = session.get_one(NotificationAttempt, page.id)
        row.receipt, row.receipt_at, row.receipt_error = event.type.value, utcnow(), event.error
    return page.incident_number, page.idempotency_key


def was_paged(sessions: sessionmaker[Session], number: int, phone: str) -> bool:
    """Only a phone this incident paged may acknowledge it by SMS (a typo'd number acks nothing)."""
    with sessions() as session:
        return session.scalar(
            select(NotificationAttempt.id).where(
                NotificationAttempt.incident_number == number,
                NotificationAttempt.channel.in_([Channel.sms.value, Channel.ivr.value]),
                NotificationAttempt.target == phone,
            ).limit(1)
        ) is not None


def actor_for(sessions: sessionmaker[Session], address: str, via: str) -> Actor:
    """The user with that email or phone, else the masked address, with how they acknowledged."""
    with sessions() as session:
        user = session.scalar(select(User).where((User.email == address) | (User.phone == address)).limit(1))
    name = user.email if user is not None else mask_target(address)
    return Actor(kind=ActorKind.user, name=f"{name} ({via})")


async def acknowledge(
    sessions: sessionmaker[Session], incidents: IncidentClient, number: int, address: str, *, via: str
) -> CallbackResult:
    """Acknowledge INC-<number> as the person at `address`; an already acknowledged incident is not an error."""
    actor = await asyncio.to_thread(actor_for, sessions, address, via)
    try:
        await counted("acknowledge", incidents.acknowledge(number, AcknowledgeInput(actor=actor, note=f"Acknowledged by {via}")))
    except TransitionRefused as err:  # acknowledged already, resolved, or closed
        return CallbackResult(status="ignored", incident=incident_ref(number), detail=err.message)
    return CallbackResult(status="acknowledged", incident=incident_ref(number), detail=f"by {actor.name}")
