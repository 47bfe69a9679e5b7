"""Who is on call: layered weekly, daily and hourly rotations handing off across DST, and overrides. Pure: no DB,
no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class OnCallSource(StrEnum):
    rotation = "rotation"
    override = "override"


class RotationKind(StrEnum):
    weekly = "weekly"
    daily = "daily"
    hourly = "hourly"


@dataclass(frozen=True)
class Rotation:
    """Participants in turn, handing off every `every` weeks, days or hours.

    The first shift starts on `start` at `handoff_time` local to `timezone`. Weekly: later handoffs happen on
    `handoff_weekday` (0 = Monday) at `handoff_time`, local wall time. Daily: every `every` days at
    `handoff_time`, local wall time. Hourly: every `every` real hours (a shift across DST stays that long)."""

    timezone: str
    handoff_weekday: int
    handoff_time: time
    start: date
    participants: tuple[int, ...]
    kind: RotationKind = RotationKind.weekly
    every: int = 1


@dataclass(frozen=True)
class Restriction:
    """When a layer applies: on `weekdays` (empty: every day), between `start` and `end` local time.

    Without times, the whole of each listed day. An `end` at or before `start` runs past midnight: the window
    belongs to the day it starts on."""

    weekdays: frozenset[int] = frozenset()
    start: time | None = None
    end: time | None = None


@dataclass(frozen=True)
class Layer:
    """One rotation, optionally restricted; of a schedule's layers, the last one that has someone wins."""

    rotation: Rotation
    restriction: Restriction | None = None
    name: str = ""


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
    """Who, and what decided it: an override, or the rotation of layer `layer` (its index)."""

    user_id: int
    source: OnCallSource
    layer: int | None = None


@dataclass(frozen=True)
class Shift:
    """`user_id` on call in [start, end) without a break (layers and overrides merged)."""

    user_id: int
    start: datetime
    end: datetime


def parse_handoff_time(value: str) -> time:
    """`HH:MM` (as stored) -> time."""
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime; use timezone-aware UTC")
    return at.astimezone(UTC)


def _wall(tz: str, day: date, at: time) -> datetime:
    """The UTC instant of wall time `at` on local `day`.

    Compared in UTC because aware datetimes sharing a tzinfo compare by wall time. A wall time skipped by a
    spring-forward gap maps (fold=0) to the instant an hour later on the new clock; a repeated one (autumn)
    to its first occurrence."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _local_day(tz: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def _first_weekly_handoff(rotation: Rotation) -> date:
    """The `every`-th handoff weekday after the start day (a start on a handoff weekday does not count)."""
    days = (rotation.handoff_weekday - rotation.start.weekday()) % 7 or 7
    return rotation.start + timedelta(days=days, weeks=rotation.every - 1)


def handoff_at(rotation: Rotation, k: int) -> datetime:
    """The instant shift `k` starts (0: the rotation's start)."""
    begin = _wall(rotation.timezone, rotation.start, rotation.handoff_time)
    if k == 0:
        return begin
    if rotation.kind == RotationKind.hourly:
        return begin + timedelta(hours=k * rotation.every)
    if rotation.kind == RotationKind.daily:
        return _wall(rotation.timezone, rotation.start + timedelta(days=k * rotation.every), rotation.handoff_time)
    day = _first_weekly_handoff(rotation) + timedelta(weeks=(k - 1) * rotation.every)
    return _wall(rotation.timezone, day, rotation.handoff_time)


def _estimate(rotation: Rotation, at: datetime) -> int:
    """A shift index within one or two of the right one, from the local date (or the hours elapsed)."""
    if rotation.kind == RotationKind.hourly:
        return int((at - handoff_at(rotation, 0)) // timedelta(hours=rotation.every))
    days = (_local_day(rotation.timezone, at) - rotation.start).days
    if rotation.kind == RotationKind.daily:
        return days // rotation.every
    return max(0, (days - (_first_weekly_handoff(rotation) - rotation.start).days) // (7 * rotation.every) + 1)


def shift_index(rotation: Rotation, at: datetime) -> int | None:
    """How many handoffs have happened at `at` (0: the first shift); None before the rotation starts."""
    at = _utc(at)
    if at < handoff_at(rotation, 0):
        return None
    k = max(0, _estimate(rotation, at))
    # The estimate from the local date is off by one around the handoff day itself; settle it on instants.
    while k >= 1 and handoff_at(rotation, k) > at:
        k -= 1
    while handoff_at(rotation, k + 1) <= at:
        k += 1
    return k


def handoffs(rotation: Rotation, after: datetime, count: int) -> list[datetime]:
    """The next `count` handoff instants strictly after `after` (UTC)."""
    index = shift_index(rotation, after)
    first = 0 if index is None else index + 1
    return [handoff_at(rotation, k) for k in range(first, first + count)]


def rotation_user(rotation: Rotation, at: datetime) -> int | None:
    """The rotation's participant at `at`, or None (nobody in it, or before its start)."""
    if not rotation.participants:
        return None
    index = shift_index(rotation, at)
    return None if index is None else rotation.participants[index % len(rotation.participants)]


def _windows(tz: str, r: Restriction, day: date) -> tuple[datetime, datetime]:
    """The restriction's window that starts on local `day`, as UTC instants."""
    if r.start is None or r.end is None:
        return _wall(tz, day, time(0)), _wall(tz, day + timedelta(days=1), time(0))
    end_day = day if r.end > r.start else day + timedelta(days=1)
    return _wall(tz, day, r.start), _wall(tz, end_day, r.end)


def restriction_covers(tz: str, r: Restriction | None, at: datetime) -> bool:
    """True when the layer applies at `at`."""
    if r is None:
        return True
    at = _utc(at)
    today = _local_day(tz, at)
    for day in (today, today - timedelta(days=1)):  # an overnight window of yesterday may still be open
        if r.weekdays and day.weekday() not in r.weekdays:
            continue
        begin, end = _windows(tz, r, day)
        if begin <= at < end:
            return True
    return False


def layer_user(layer: Layer, at: datetime) -> int | None:
    """Who the layer has at `at`: its rotation's participant where its restriction applies."""
    if not restriction_covers(layer.rotation.timezone, layer.restriction, at):
        return None
    return rotation_user(layer.rotation, at)


def active_override(overrides: Sequence[Override], at: datetime) -> Override | None:
    at = _utc(at)
    covering = [o for o in overrides if _utc(o.starts_at) <= at < _utc(o.ends_at)]
    return max(covering, key=lambda o: (_utc(o.created_at), o.id), default=None)


def oncall_in_layers(layers: Sequence[Layer], overrides: Sequence[Override], at: datetime) -> OnCall | None:
    """Who is on call at `at` and why: an override covering it, else the highest layer with someone; else None."""
    override = active_override(overrides, at)
    if override is not None:
        return OnCall(override.user_id, OnCallSource.override)
    for index in reversed(range(len(layers))):
        user = layer_user(layers[index], at)
        if user is not None:
            return OnCall(user, OnCallSource.rotation, index)
    return None


def oncall(rotation: Rotation, overrides: Sequence[Override], at: datetime) -> OnCall | None:
    """A single-rotation schedule: an override covering `at`, else the rotation; None if nobody."""
    return oncall_in_layers([Layer(rotation)], overrides, at)


def oncall_at(rotation: Rotation, overrides: Sequence[Override], at: datetime) -> int | None:
    """The user id on call at `at`, or None."""
    found = oncall(rotation, overrides, at)
    return found.user_id if found else None


def _changes(layers: Sequence[Layer], overrides: Sequence[Override], start: datetime, end: datetime) -> list[datetime]:
    """Every instant in (start, end) at which the answer may change: handoffs, window edges, override edges."""
    points: set[datetime] = set()
    for layer in layers:
        r = layer.rotation
        k = shift_index(r, start)
        k = 0 if k is None else k + 1
        while (at := handoff_at(r, k)) < end:
            points.add(at)
            k += 1
        if layer.restriction is not None:
            day = _local_day(r.timezone, start) - timedelta(days=1)
            while (edges := _windows(r.timezone, layer.restriction, day))[0] < end:
                points.update(edges)
                day += timedelta(days=1)
    for o in overrides:
        points.update((_utc(o.starts_at), _utc(o.ends_at)))
    return sorted(p for p in points if start < p < end)


def timeline(layers: Sequence[Layer], overrides: Sequence[Override], start: datetime, end: datetime) -> list[Shift]:
    """The shifts in [start, end), clipped to it; consecutive stretches of one user merge into one shift."""
    start, end = _utc(start), _utc(end)
    shifts: list[Shift] = []
    user: int | None = None
    since = start
    for at in [start, *_changes(layers, overrides, start, end)]:
        found = oncall_in_layers(layers, overrides, at)
        now = found.user_id if found else None
        if at == start or now != user:
            if user is not None and at > since:
                shifts.append(Shift(user, since, at))
            user, since = now, at
    if user is not None:
        shifts.append(Shift(user, since, end))
    return shifts


def next_change(
    layers: Sequence[Layer], overrides: Sequence[Override], after: datetime, horizon: timedelta = timedelta(days=366),
) -> datetime | None:
    """The first instant after `after` at which someone else (or nobody) is on call; None within `horizon`."""
    after = _utc(after)
    now = oncall_in_layers(layers, overrides, after)
    step = timedelta(days=14)  # in chunks: an hourly rotation has 8,760 handoffs a year
    begin = after
    while begin < after + horizon:
        end = min(begin + step, after + horizon)
        for at in _changes(layers, overrides, begin, end):
            found = oncall_in_layers(layers, overrides, at)
            if (found.user_id if found else None) != (now.user_id if now else None):
                return at
        begin = end
    return None
