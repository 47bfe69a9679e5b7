"""What an SMS/IVR middleware POSTs back to Vigil: delivery receipts, SMS replies, IVR events."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from vigil.contracts import parse_incident_number
from vigil.providers.base import E164

ACK_DIGIT = "1"  # the IVR keypress that acknowledges
_ACK_REPLY = re.compile(r"\s*ack\s+([A-Za-z0-9-]{1,32})\s*", re.IGNORECASE)


class CallbackType(StrEnum):
    delivered = "delivered"
    failed = "failed"
    sms_reply = "sms_reply"
    ivr_answered = "ivr_answered"
    ivr_keypress = "ivr_keypress"
    ivr_no_answer = "ivr_no_answer"


class ProviderCallback(BaseModel):
    """One event from the provider; `event_id` is unique per event, so a redelivered callback is a no-op."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    event_id: str = Field(min_length=1, max_length=200)
    type: CallbackType
    message_id: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=500)
    from_: str | None = Field(default=None, alias="from", pattern=E164)
    text: str | None = Field(default=None, max_length=2000)  # sms_reply
    digits: str | None = Field(default=None, max_length=32)  # ivr_keypress
    error: str | None = Field(default=None, max_length=2000)  # failed
    occurred_at: datetime | None = None


def parse_ack_reply(text: str) -> int | None:
    """`ACK 123` or `ACK INC-123` (any case, any surrounding spaces) -> 123; anything else -> None."""
    m = _ACK_REPLY.fullmatch(text)
    # parse_incident_number bounds the number: `ACK 99999999999999999999` must not reach the database.
    return parse_incident_number(m.group(1)) if m else None
