"""What the admin CRUD routers share: 404 / 409 / 422 in the one error shape, and field types."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.errors import ERROR_RESPONSES, ApiError

T = TypeVar("T")
ADMIN_ERRORS = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422)}
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as 'Europe/Paris'") from None
    return value


def _phone(value: str) -> str:
    if not E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number (+ country code and number, e.g. +14155550100)")
    return value


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _hhmm(value: str) -> str:
    if not HHMM.match(value):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return value


# The OpenAPI says what the validators check, so clients (and schemathesis) can send valid values.
TimeZoneName = Annotated[str, AfterValidator(_timezone), WithJsonSchema({"type": "string", "description": "IANA name"})]
Phone = Annotated[str, AfterValidator(_phone), WithJsonSchema({"type": "string", "pattern": E164.pattern})]
Email = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string", "format": "email", "maxLength": 320})]
TimeOfDay = Annotated[str, AfterValidator(_hhmm), WithJsonSchema({"type": "string", "pattern": HHMM.pattern})]


def not_null(value: T | None) -> T:
    """For PATCH bodies: a field may be left out, but not set to null."""
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


def _not_nullable(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A `not_null` field may be left out but not set to null: its schema says so (no null type, no default)."""
    for decorator in model.__pydantic_decorators__.field_validators.values():
        if decorator.func is not not_null:
            continue
        for name in decorator.info.fields:
            prop = schema["properties"][name]
            kept = [variant for variant in prop.pop("anyOf", []) if variant != {"type": "null"}]
            prop.pop("default", None)
            if len(kept) == 1:
                prop.update(kept[0])
            elif kept:
                prop["anyOf"] = kept


class Patch(BaseModel):
    """A PATCH body: only the fields given change; those listed with `not_null` may not be null."""

    model_config = ConfigDict(json_schema_extra=_not_nullable)


def invalid(problems: list[tuple[str, str]]) -> ApiError:
    """A 422 shaped like request validation: `details` lists `{field, message, type}`."""
    details = [{"field": field, "message": message, "type": "value_error"} for field, message in problems]
    return ApiError(422, "validation_error", "; ".join(f"{f}: {m}" for f, m in problems), details)


def unknown_ids(session: Session, model: type, ids: list[int], field: str, what: str) -> list[tuple[str, str]]:
    """A problem for each id in `ids` (at `field.<index>`) with no `model` row."""
    known = set(session.scalars(select(model.id).where(model.id.in_(set(ids))))) if ids else set()
    return [(f"{field}.{i}", f"{what} {v} does not exist") for i, v in enumerate(ids) if v not in known]


def get_or_404(session: Session, model: type[T], id: int, what: str) -> T:
    row = session.get(model, id)
    if row is None:
        raise ApiError(404, "not_found", f"{what} {id} does not exist")
    return row


def save_unique(session: Session, row: object, column: InstrumentedAttribute, conflict: str) -> None:
    """Add or update `row` and commit; 409 `conflict` if another row has its value of the unique `column`."""
    with session.no_autoflush:
        found = session.scalar(select(column.class_.id).where(column == getattr(row, column.key)))
    if found is not None and found != getattr(row, "id", None):
        raise ApiError(409, "conflict", conflict)
    session.add(row)
    commit_or_409(session, conflict)


def delete_unused(session: Session, row: object, what: str, referrers: list[str]) -> None:
    """Delete `row`, or 409 naming what still refers to it."""
    if referrers:
        raise ApiError(409, "conflict", f"{what} is still referenced by {', '.join(referrers)}", {"referrers": referrers})
    session.delete(row)
    session.commit()


def commit_or_409(session: Session, conflict: str) -> None:
    """Commit; a unique constraint hit by a concurrent writer is a 409, like the checks done before it."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, "conflict", conflict) from None
