"""Outgoing webhooks: one JSON POST per page, Slack-incoming-webhook compatible.

Slack reads the top-level `text` and ignores the other keys; generic receivers get the same event as
structure in `event` and `incident`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from vigil.providers import transport
from vigil.providers.base import SendResult
from vigil.urls import Network
from vigil.contracts import incident_ref


class WebhookIncident(BaseModel):
    """The incident as a webhook receiver sees it."""

    model_config = ConfigDict(extra="allow")

    number: int
    title: str
    severity: str
    service: str
    status: str
    url: str
    temporal_url: str | None = None
    step: str | None = None


class WebhookMessage(BaseModel):
    """One webhook call. `secret` is None for receivers that verify nothing (Slack)."""

    url: str
    secret: str | None = Field(default=None, repr=False)
    idempotency_key: str = Field(min_length=1)
    text: str = Field(min_length=1)
    incident: WebhookIncident
    event: str = "escalation"


def incident_text(incident: WebhookIncident) -> str:
    """The Slack line: incident, severity, service, title, then the links (Slack `<url|label>` syntax)."""
    line = f"[Vigil] {incident_ref(incident.number)} [{incident.severity}] {incident.service}: {incident.title}"
    if incident.step:
        line += f" ({incident.step})"
    links = [f"<{incident.url}|{incident_ref(incident.number)}>"]
    if incident.temporal_url:
        links.append(f"<{incident.temporal_url}|Temporal>")
    return f"{line}\n{' · '.join(links)}"


def webhook_body(message: WebhookMessage) -> dict:
    """The JSON document POSTed."""
    return {
        "text": message.text,
        "event": message.event,
        "idempotency_key": message.idempotency_key,
        "incident": message.incident.model_dump(mode="json"),
    }


class WebhookSender:
    """POSTs WebhookMessages; one pooled client for every webhook URL."""

    name = "webhook"

    def __init__(
        self,
        *,
        connect_timeout_seconds: float = 3.0,
        read_timeout_seconds: float = 10.0,
        allowlist: Sequence[Network] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._client = transport.new_client(connect_timeout_seconds, read_timeout_seconds, allowlist=allowlist)

    def send(self, message: WebhookMessage) -> SendResult:
        """Deliver one webhook (Permanent/TransientDeliveryError otherwise); the key doubles as message id."""
        secret = message.secret.encode() if message.secret else None
        transport.post(
            self._client, message.url, transport.encode(webhook_body(message)),
            idempotency_key=message.idempotency_key, secret=secret, clock=self._clock,
        )
        return SendResult(message_id=message.idempotency_key)

    def close(self) -> None:
        self._client.close()
