"""Bodies of the users and contact-groups endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.admin import Email, Patch, Phone, TimeZoneName, not_null
from vigil.contracts import BodyId
from vigil.security import Role

Name = Field(min_length=1, max_length=200)


class UserCreate(BaseModel):
    name: str = Name
    email: Email
    phone: Phone | None = Field(default=None, description="E.164, e.g. +14155550100; needed for SMS and IVR.")
    timezone: TimeZoneName = Field(default="UTC", description="IANA name, e.g. Europe/Paris.")
    role: Role = Field(default=Role.responder, description="What an API key of this user may do.")


class UserUpdate(Patch):
    """Only the fields given change; `phone: null` removes the phone number."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    phone: Phone | None = None
    timezone: TimeZoneName | None = None
    role: Role | None = None

    _not_null = field_validator("name", "email", "timezone", "role")(not_null)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str
    phone: str | None
    timezone: str
    role: Role
    created_at: datetime


class GroupCreate(BaseModel):
    name: str = Name
    members: list[BodyId] = Field(default_factory=list, max_length=500, description="User ids, in order.")


class GroupUpdate(Patch):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    members: list[BodyId] | None = Field(default=None, max_length=500, description="Replaces the whole list.")

    _not_null = field_validator("name", "members")(not_null)


class GroupRead(BaseModel):
    id: int
    name: str
    members: list[int]
    created_at: datetime
