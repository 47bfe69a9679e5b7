"""Who is on call: weekly rotations handing off at local wall time, and overrides. Pure: no DB, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class OnCallSource(StrEnum):
    rotation = "rotation"
    override = "override"


@dataclass(frozen=True)
class Rotation:
    """A weekly rotation: one participant a week, handing off at `handoff_weekday` (0 = Monday) and
    `handoff_time` local to `timezone`. The first shift starts on `start` at `handoff_time`."""

    timezone: str
    handoff_weekday: int
    handoff_time: time
    start: date
    participants: tuple[int, ...]


@dataclass(frozen=True)
class Override:
    """`user_id` is on call in [starts_at, ends_at); the newest (`created_at`, then `id`) wins an overlap."""

    user_id: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    id: int = 0


@dataclass(frozen=True)
class OnCall:
    user_id: int
    source: OnCallSource


def parse_handoff_time(value: str) -> time:
    """`HH:MM` (as stored) -> time."""
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime; use timezone-aware UTC")
    return at.astimezone(UTC)


def _instant(rotation: Rotation, day: date) -> datetime:
    """The UTC instant of `handoff_time` on local `day`.

    Compared in UTC because aware datetimes sharing a tzinfo compare by wall time. A wall time skipped by a
    spring-forward gap maps (fold=0) to the instant an hour later on the new clock; a repeated one (autumn)
    to its first occurrence."""
    return datetime.combine(day, rotation.handoff_time, tzinfo=ZoneInfo(rotation.timezone)).astimezone(UTC)


def _first_handoff(rotation: Rotation) -> date:
    """The first handoff day after the start day (a week later when the start is itself a handoff day)."""
    return rotation.start + timedelta(days=(rotation.handoff_weekday - rotation.start.weekday()) % 7 or 7)


def shift_index(rotation: Rotation, at: datetime) -> int | None:
    """How many handoffs have happened at `at` (0: the first shift); None before the rotation starts."""
    at = _utc(at)
    if at < _instant(rotation, rotation.start):
        return None
    first = _first_handoff(rotation)

    def handoff(k: int) -> datetime:  # k >= 1: the k-th handoff
        return _instant(rotation, first + timedelta(weeks=k - 1))

    local_day = at.astimezone(ZoneInfo(rotation.timezone)).date()
    k = max(0, (local_day - first).days // 7 + 1)
    # The estimate from the local date is off by one around the handoff day itself; settle it on instants.
    while k >= 1 and handoff(k) > at:
        k -= 1
    while handoff(k + 1) <= at:
        k += 1
    return k


def handoffs(rotation: Rotation, after: datetime, count: int) -> list[datetime]:
    """The next `count` handoff instants strictly after `after` (UTC)."""
    after = _utc(after)
    index = shift_index(rotation, after)
    first = _first_handoff(rotation)
    days = [rotation.start] if index is None else []
    k = (index or 0) + 1
    while len(days) < count:
        days.append(first + timedelta(weeks=k - 1))
        k += 1
    return [_instant(rotation, d) for d in days[:count]]


def active_override(overrides: list[Override], at: datetime) -> Override | None:
    at = _utc(at)
    covering = [o for o in overrides if _utc(o.starts_at) <= at < _utc(o.ends_at)]
    return max(covering, key=lambda o: (_utc(o.created_at), o.id), default=None)


def oncall(rotation: Rotation, overrides: list[Override], at: datetime) -> OnCall | None:
    """Who is on call at `at` and why: an override covering it, else the rotation; None if nobody."""
    override = active_override(overrides, at)
    if override is not None:
        return OnCall(override.user_id, OnCallSource.override)
    if not rotation.participants:
        return None
    index = shift_index(rotation, at)
    if index is None:
        return None
    return OnCall(rotation.participants[index % len(rotation.participants)], OnCallSource.rotation)


def oncall_at(rotation: Rotation, overrides: list[Override], at: datetime) -> int | None:
    """The user id on call at `at`, or None."""
    found = oncall(rotation, overrides, at)
    return found.user_id if found else None
