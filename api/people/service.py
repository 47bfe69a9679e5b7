"""Users and contact groups: create, change, delete (refused while something still refers to the row)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import delete_unused, get_or_404, invalid, save_unique, unknown_ids
from api.errors import ApiError
from api.people.schemas import GroupCreate, GroupRead, GroupUpdate, UserCreate, UserUpdate
from vigil.contracts import TargetKind
from vigil.models import ContactGroup, ContactGroupMember, User, utcnow
from vigil.policies.service import policy_referrers, user_referrers
from vigil.security import Role


def save_user(session: Session, row: User) -> User:
    save_unique(session, row, User.email, f"a user with email {row.email!r} exists")
    return row


def create_user(*, session: Session, body: UserCreate) -> User:
    return save_user(session, User(**body.model_dump()))


def lock_admins(session: Session) -> set[int]:
    """The admins' ids, their rows locked until commit, so two concurrent demotions cannot both see the other
    admin (PostgreSQL re-reads locked rows; SQLite's BEGIN IMMEDIATE already serialises writers)."""
    return set(session.scalars(select(User.id).where(User.role == Role.admin.value).with_for_update()))


def refuse_last_admin(session: Session, user_id: int, doing: str) -> None:
    """409 if `user_id` is the only admin: nobody could manage users or keys afterwards."""
    if lock_admins(session) == {user_id}:
        raise ApiError(
            409, "last_admin",
            f"user {user_id} is the last admin; {doing} would leave no one able to manage Vigil. "
            "Make another user admin first.",
            {"user_id": user_id},
        )


def update_user(*, session: Session, user_id: int, body: UserUpdate) -> User:
    row = get_or_404(session, User, user_id, "user")
    if body.role is not None and body.role != Role.admin:
        refuse_last_admin(session, row.id, f"making it {body.role.value}")
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(row, name, value)
    return save_user(session, row)


def delete_user(*, session: Session, user_id: int, caller_id: int) -> None:
    """Refused while a policy, group, schedule or current override names the user; its API keys go with it."""
    row = get_or_404(session, User, user_id, "user")
    if row.id == caller_id:
        raise ApiError(409, "conflict", "you cannot delete your own user")
    refuse_last_admin(session, row.id, "deleting it")
    delete_unused(session, row, f"user {row.name!r}", user_referrers(session=session, user_id=row.id, now=utcnow()))


def group_read(row: ContactGroup) -> GroupRead:
    return GroupRead(id=row.id, name=row.name, members=row.member_ids, created_at=row.created_at)


def set_members(session: Session, row: ContactGroup, members: list[int]) -> None:
    problems = unknown_ids(session, User, members, "body.members", "user")
    problems += [
        (f"body.members.{i}", f"user {m} is listed twice") for i, m in enumerate(members) if m in members[:i]
    ]
    if problems:
        raise invalid(problems)
    row.members = [ContactGroupMember(position=i, user_id=m) for i, m in enumerate(members)]


def save_group(session: Session, row: ContactGroup) -> ContactGroup:
    save_unique(session, row, ContactGroup.name, f"a contact group named {row.name!r} exists")
    return row


def create_group(*, session: Session, body: GroupCreate) -> ContactGroup:
    row = ContactGroup(name=body.name)
    set_members(session, row, body.members)
    return save_group(session, row)


def update_group(*, session: Session, group_id: int, body: GroupUpdate) -> ContactGroup:
    row = get_or_404(session, ContactGroup, group_id, "contact group")
    if body.members is not None:
        set_members(session, row, body.members)
    if body.name is not None:
        row.name = body.name
    return save_group(session, row)


def delete_group(*, session: Session, group_id: int) -> None:
    row = get_or_404(session, ContactGroup, group_id, "contact group")
    delete_unused(session, row, f"contact group {row.name!r}",
                  policy_referrers(session=session, kind=TargetKind.group, id=row.id))
