"""Response body of provider callbacks."""

from __future__ import annotations

from pydantic import BaseModel


class CallbackResult(BaseModel):
    status: str  # applied | acknowledged | duplicate | ignored
    incident: str | None = None
    detail: str = ""
