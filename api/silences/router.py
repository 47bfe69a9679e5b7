"""POST/GET/DELETE /api/v1/silences: label-matcher silences with a start, an end and a reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import select

from api.deps import Admin, SessionDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError
from vigil.matchers import Matcher
from vigil.contracts import Id
from vigil.models import Silence, utcnow

router = APIRouter(prefix="/api/v1/silences", tags=["silences"])


class SilenceCreate(BaseModel):
    matchers: list[Matcher] = Field(min_length=1, max_length=50)
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now.")
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _window(self) -> SilenceCreate:
        start = self.starts_at or utcnow()
        if self.ends_at <= start:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at <= utcnow():
            raise ValueError("ends_at is in the past")
        return self


class SilenceRead(BaseModel):
    id: int
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    active: bool


def _read(row: Silence) -> SilenceRead:
    now = utcnow()
    return SilenceRead(
        id=row.id, matchers=[Matcher.model_validate(m) for m in row.matchers], starts_at=row.starts_at,
        ends_at=row.ends_at, reason=row.reason, created_by=row.created_by, created_at=row.created_at,
        active=row.starts_at <= now < row.ends_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SilenceRead,
             responses={k: ERROR_RESPONSES[k] for k in (401, 403, 422)})
def create_silence(body: SilenceCreate, user: Admin, session: SessionDep) -> SilenceRead:
    """Matching alerts are stored as `silenced`: no incident, no page. If one still fires when the silence
    ends, its incident opens then."""
    row = Silence(
        matchers=[m.model_dump() for m in body.matchers], starts_at=body.starts_at or utcnow(), ends_at=body.ends_at,
        reason=body.reason, created_by=user.email,
    )
    session.add(row)
    session.commit()
    return _read(row)


@router.get("", response_model=list[SilenceRead], responses={k: ERROR_RESPONSES[k] for k in (401, 403)})
def list_silences(
    _user: Viewer, session: SessionDep, active: Annotated[bool | None, Query(description="Only active ones")] = None
) -> list[SilenceRead]:
    """Newest first."""
    now = utcnow()
    query = select(Silence).order_by(Silence.id.desc())
    if active:
        query = query.where(Silence.starts_at <= now, Silence.ends_at > now)
    return [_read(r) for r in session.scalars(query.limit(500))]


@router.delete("/{silence_id:int}", response_model=SilenceRead, responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404)})
def expire_silence(silence_id: Id, _user: Admin, session: SessionDep) -> SilenceRead:
    """End the silence now; alerts it held that still fire open their incidents at the next reconcile."""
    row = session.get(Silence, silence_id)
    if row is None:
        raise ApiError(404, "not_found", f"silence {silence_id} does not exist")
    now = utcnow()
    if row.ends_at > now:
        row.ends_at = max(now, row.starts_at)
        session.commit()
    return _read(row)
