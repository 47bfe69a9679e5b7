"""The generic HTTP "middleware" adapter: the operator's own service places the SMS or call.

The wire contract is in docs/providers.md ("Implementing your own SMS/IVR provider").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from vigil.logging import get_logger
from vigil.providers import transport
from vigil.providers.base import OutboundMessage, SendResult
from vigil.providers.callbacks import ACK_DIGIT
from vigil.urls import Network

log = get_logger(__name__)


class HttpPhoneProvider:
    """Signed JSON POST of one message to the middleware's URL for one channel (sms or ivr)."""

    def __init__(
        self,
        *,
        name: str,
        channel: str,
        url: str,
        secret: bytes,
        connect_timeout_seconds: float = 3.0,
        read_timeout_seconds: float = 10.0,
        allowlist: Sequence[Network] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.channel = channel
        self.url = url
        self._secret = secret
        self._clock = clock
        self._client = transport.new_client(connect_timeout_seconds, read_timeout_seconds, allowlist=allowlist)

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand the message to the middleware; Permanent/TransientDeliveryError if it does not take it."""
        if message.channel != self.channel:
            raise ValueError(f"{self.channel} adapter given a {message.channel} message")
        payload = message.model_dump(mode="json")
        if message.channel == "ivr":
            payload["ack_digit"] = ACK_DIGIT
        response = transport.post(
            self._client, self.url, transport.encode(payload),
            idempotency_key=message.idempotency_key, secret=self._secret, clock=self._clock, error_field=True,
        )
        message_id = _message_id(response)
        if message_id is None:
            # Accepted all the same: raising would make Temporal retry, which the key makes a no-op at best.
            log.warning(
                "provider accepted the message without a message_id; using the idempotency key",
                integration=self.name, channel=self.channel, incident=message.incident,
                idempotency_key=message.idempotency_key, status=response.status_code,
            )
            message_id = message.idempotency_key
        return SendResult(message_id=message_id)

    def close(self) -> None:
        self._client.close()


def _message_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("message_id") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None
