"""/api/v1/users and /api/v1/contact-groups (admin): the people escalation policies page."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from api.admin import ADMIN_ERRORS, get_or_404
from api.deps import Admin, SessionDep
from api.people import service
from api.people.schemas import GroupCreate, GroupRead, GroupUpdate, UserCreate, UserRead, UserUpdate
from vigil.contracts import Id
from vigil.models import ContactGroup, User

users = APIRouter(prefix="/api/v1/users", tags=["users"])
groups = APIRouter(prefix="/api/v1/contact-groups", tags=["contact groups"])


@users.post("", status_code=status.HTTP_201_CREATED, response_model=UserRead, responses=ADMIN_ERRORS)
def create_user(body: UserCreate, _user: Admin, session: SessionDep) -> UserRead:
    """A person to page (no API key: a user gets one only through bootstrap for now)."""
    return UserRead.model_validate(service.create_user(session=session, body=body))


@users.get("", response_model=list[UserRead], responses=ADMIN_ERRORS)
def list_users(_user: Admin, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(r) for r in session.scalars(select(User).order_by(User.id))]


@users.get("/{user_id:int}", response_model=UserRead, responses=ADMIN_ERRORS)
def get_user(user_id: Id, _user: Admin, session: SessionDep) -> UserRead:
    return UserRead.model_validate(get_or_404(session, User, user_id, "user"))


@users.patch("/{user_id:int}", response_model=UserRead, responses=ADMIN_ERRORS)
def update_user(user_id: Id, body: UserUpdate, _user: Admin, session: SessionDep) -> UserRead:
    """Running incidents page the user's current addresses: they are looked up when each step runs."""
    return UserRead.model_validate(service.update_user(session=session, user_id=user_id, body=body))


@users.delete("/{user_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_user(user_id: Id, user: Admin, session: SessionDep) -> None:
    """409 naming every policy, group, schedule and current override that still refers to the user."""
    service.delete_user(session=session, user_id=user_id, caller_id=user.user_id)


@groups.post("", status_code=status.HTTP_201_CREATED, response_model=GroupRead, responses=ADMIN_ERRORS)
def create_group(body: GroupCreate, _user: Admin, session: SessionDep) -> GroupRead:
    """A step targeting the group pages every member, in order."""
    return service.group_read(service.create_group(session=session, body=body))


@groups.get("", response_model=list[GroupRead], responses=ADMIN_ERRORS)
def list_groups(_user: Admin, session: SessionDep) -> list[GroupRead]:
    return [service.group_read(r) for r in session.scalars(select(ContactGroup).order_by(ContactGroup.id))]


@groups.get("/{group_id:int}", response_model=GroupRead, responses=ADMIN_ERRORS)
def get_group(group_id: Id, _user: Admin, session: SessionDep) -> GroupRead:
    return service.group_read(get_or_404(session, ContactGroup, group_id, "contact group"))


@groups.patch("/{group_id:int}", response_model=GroupRead, responses=ADMIN_ERRORS)
def update_group(group_id: Id, body: GroupUpdate, _user: Admin, session: SessionDep) -> GroupRead:
    return service.group_read(service.update_group(session=session, group_id=group_id, body=body))


@groups.delete("/{group_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_group(group_id: Id, _user: Admin, session: SessionDep) -> None:
    """409 naming the escalation policies that still target the group."""
    service.delete_group(session=session, group_id=group_id)
