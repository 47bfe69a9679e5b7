"""/api/v1/keys (your own keys), /api/v1/users/{id}/keys (admin) and /api/v1/audit-log (admin).

A key is shown once, in the response that creates it; afterwards only its prefix and id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select

from api.admin import ADMIN_ERRORS
from api.deps import Admin, Principal, SessionDep, Viewer
from api.keys import service
from api.keys.schemas import AuditRead, KeyCreate, KeyCreated, KeyRead
from vigil.contracts import Id, Offset
from vigil.models import AuditEntry

own = APIRouter(prefix="/api/v1/keys", tags=["api keys"])
users = APIRouter(prefix="/api/v1/users", tags=["api keys"])
audit_log = APIRouter(prefix="/api/v1/audit-log", tags=["api keys"])
ERRORS = {k: ADMIN_ERRORS[k] for k in (401, 404, 409, 422)}


def _who(user: Principal) -> dict:
    return {"actor": f"{user.email} (user {user.user_id})", "actor_id": user.user_id}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@own.get("", response_model=list[KeyRead], responses=ERRORS)
def list_own_keys(user: Viewer, session: SessionDep) -> list[KeyRead]:
    """Your keys, revoked and expired ones included (prefix only)."""
    return service.list_keys(session=session, user_id=user.user_id)


@own.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated, responses=ERRORS)
def create_own_key(body: KeyCreate, user: Viewer, session: SessionDep, request: Request) -> KeyCreated:
    """A new key with your role; `key` is shown only in this response."""
    return service.create_key(session=session, user_id=user.user_id, body=body, client=_client(request), **_who(user))


@own.delete("/{key_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def revoke_own_key(key_id: Id, user: Viewer, session: SessionDep, request: Request) -> None:
    """Revoke one of your keys (this one included); it gets 401 from now on."""
    service.revoke_key(session=session, user_id=user.user_id, key_id=key_id, client=_client(request), **_who(user))


@users.get("/{user_id:int}/keys", response_model=list[KeyRead], responses=ADMIN_ERRORS)
def list_user_keys(user_id: Id, _user: Admin, session: SessionDep) -> list[KeyRead]:
    return service.list_keys(session=session, user_id=user_id)


@users.post("/{user_id:int}/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated, responses=ADMIN_ERRORS)
def create_user_key(user_id: Id, body: KeyCreate, user: Admin, session: SessionDep, request: Request) -> KeyCreated:
    """A key for the user (with the user's role); `key` is shown only in this response."""
    return service.create_key(session=session, user_id=user_id, body=body, client=_client(request), **_who(user))


@users.delete("/{user_id:int}/keys/{key_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def revoke_user_key(user_id: Id, key_id: Id, user: Admin, session: SessionDep, request: Request) -> None:
    """409 for the last usable key of the admins."""
    service.revoke_key(session=session, user_id=user_id, key_id=key_id, client=_client(request), **_who(user))


@audit_log.get("", response_model=list[AuditRead], responses=ADMIN_ERRORS)
def read_audit_log(
    _user: Admin, session: SessionDep, user_id: Id | None = None, action: str | None = Query(None, max_length=32),
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Offset = 0,
) -> list[AuditRead]:
    """Key and admin operations, newest first; `user_id` filters by the user the operation was about."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    if user_id is not None:
        query = query.where(AuditEntry.subject_user_id == user_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return [AuditRead.model_validate(r) for r in session.scalars(query)]
