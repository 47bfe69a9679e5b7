"""What every SMS/IVR adapter takes, returns and raises."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

E164 = r"^\+[1-9][0-9]{1,14}$"


class DeliveryError(Exception):
    """A provider did not take the message."""


class PermanentDeliveryError(DeliveryError):
    """The provider refused for good (bad address, invalid number, 4xx); retrying will not help."""


class TransientDeliveryError(DeliveryError):
    """The provider may take it later (5xx, 408, 429, timeout, connection error); retry with the same key."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class OutboundMessage(BaseModel):
    """One SMS or call to place, as the adapter sends it."""

    channel: Literal["sms", "ivr"]
    to: str = Field(pattern=E164)
    text: str = Field(min_length=1)
    idempotency_key: str = Field(min_length=1)
    incident: str  # "INC-42"
    ack_code: str  # an SMS reply "ACK <code>" acknowledges
    callback_url: str | None = None


class SendResult(BaseModel):
    """The provider's id of the accepted message; delivery receipts name it."""

    message_id: str


class PhoneProvider(Protocol):
    """An SMS or IVR backend. `send` is blocking: it runs in the activity thread pool."""

    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

    def close(self) -> None: ...
