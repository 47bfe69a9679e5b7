"""The console adapter: writes the SMS or call to the log, for local runs without a provider."""

from __future__ import annotations

import uuid

from vigil.escalation import mask_target
from vigil.logging import get_logger
from vigil.providers.base import OutboundMessage, SendResult

log = get_logger(__name__)


class ConsoleProvider:
    """Logs each message at WARNING, so it stands out in `make run`; never fails."""

    name = "console"

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, message: OutboundMessage) -> SendResult:
        message_id = f"console-{uuid.uuid4().hex[:12]}"
        log.warning(
            f"{message.channel.upper()} to {mask_target(message.to)}: {message.text}",
            channel=message.channel,
            target=mask_target(message.to),
            incident=message.incident,
            idempotency_key=message.idempotency_key,
            provider_message_id=message_id,
        )
        return SendResult(message_id=message_id)

    def close(self) -> None:
        """Nothing to release."""
