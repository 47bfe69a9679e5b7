"""Bodies of the API-key and audit-log endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the key is for, e.g. `laptop` or `grafana`.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="After this instant the key gets 401; with a zone. Unset: it does not expire."
    )


class KeyRead(BaseModel):
    """A key as listed: its prefix identifies it; the key itself is never shown again."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="The API key. Shown only in this response: store it now.")


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    action: str
    actor: str
    actor_user_id: int | None
    subject_user_id: int | None
    key_id: int | None
    key_prefix: str | None
    client: str | None
    detail: str | None
