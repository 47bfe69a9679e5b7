"""POST/GET/PATCH /api/v1/integrations (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import Admin, SessionDep
from api.errors import ERROR_RESPONSES, ApiError
from vigil.bootstrap import create_integration
from vigil.contracts import Id
from vigil.models import Integration
from vigil.rules import IntegrationRules

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
ADMIN_ERRORS = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422)}
MAX_HOLD_SECONDS = 24 * 3600


class IntegrationSettings(BaseModel):
    auto_resolve: StrictBool | None = Field(default=None, description="Resolve the incident when every alert resolves.")
    hold_resolution_seconds: StrictInt | None = Field(
        default=None, ge=0, le=MAX_HOLD_SECONDS,
        description="Flap damping: auto-resolve only after every alert has stayed resolved this long.",
    )


class IntegrationCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["alertmanager", "pagerduty", "generic"] = "generic"
    auto_resolve: StrictBool = True
    hold_resolution_seconds: StrictInt = Field(default=0, ge=0, le=MAX_HOLD_SECONDS)


class IntegrationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    prefix: str
    auto_resolve: bool
    hold_resolution_seconds: int
    rules: IntegrationRules
    created_at: datetime

    @field_validator("rules", mode="before")
    @classmethod
    def _defaults(cls, value: object) -> object:
        return value or IntegrationRules()


class IntegrationCreated(IntegrationRead):
    key: str = Field(description="Shown once; only its hash is stored.")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IntegrationCreated, responses=ADMIN_ERRORS)
def create(body: IntegrationCreate, _user: Admin, session: SessionDep) -> IntegrationCreated:
    """A new source with its own key (shown once)."""
    key = create_integration(session, **body.model_dump())
    try:
        session.commit()
    except IntegrityError:
        raise ApiError(409, "conflict", f"an integration named {body.name!r} exists") from None
    row = session.scalars(select(Integration).where(Integration.name == body.name)).one()
    return IntegrationCreated(**IntegrationRead.model_validate(row).model_dump(), key=key)


@router.get("", response_model=list[IntegrationRead], responses=ADMIN_ERRORS)
def list_all(_user: Admin, session: SessionDep) -> list[IntegrationRead]:
    return [IntegrationRead.model_validate(r) for r in session.scalars(select(Integration).order_by(Integration.id))]


@router.put("/{integration_id:int}/rules", response_model=IntegrationRead, responses=ADMIN_ERRORS)
def put_rules(integration_id: Id, body: IntegrationRules, _user: Admin, session: SessionDep) -> IntegrationRead:
    """Routing (label matchers -> service), `group_by` labels and severity map. Applies to alerts received
    from now on; open incidents keep their group key."""
    row = _get(session, integration_id)
    row.rules = body.model_dump(mode="json")
    session.commit()
    return IntegrationRead.model_validate(row)


def _get(session: Session, integration_id: Id) -> Integration:
    row = session.get(Integration, integration_id)
    if row is None:
        raise ApiError(404, "not_found", f"integration {integration_id} does not exist")
    return row


@router.patch("/{integration_id:int}", response_model=IntegrationRead, responses=ADMIN_ERRORS)
def update(integration_id: Id, body: IntegrationSettings, _user: Admin, session: SessionDep) -> IntegrationRead:
    """Applies to incidents opened from now on; running incidents keep what they started with."""
    row = _get(session, integration_id)
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(row, name, value)
    session.commit()
    return IntegrationRead.model_validate(row)
