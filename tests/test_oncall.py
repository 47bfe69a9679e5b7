"""On-call from a weekly rotation and overrides: handoffs at local wall time across DST, boundaries, overrides."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from vigil.oncall import OnCall, OnCallSource, Override, Rotation, handoffs, oncall, oncall_at, shift_index

ALICE, BOB, CAROL = 1, 2, 3


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rotation(start: date, *, tz: str = "America/New_York", weekday: int = 0, at: time = time(9, 0),
             people: tuple[int, ...] = (ALICE, BOB, CAROL)) -> Rotation:
    return Rotation(timezone=tz, handoff_weekday=weekday, handoff_time=at, start=start, participants=people)


def test_spring_forward_week_is_167_hours() -> None:
    # Monday 2026-03-02 09:00 EST = 14:00 UTC; DST starts Sunday 03-08; Monday 03-09 09:00 EDT = 13:00 UTC.
    r = rotation(date(2026, 3, 2))
    assert oncall_at(r, [], utc(2026, 3, 2, 14, 0)) == ALICE
    [first, second] = handoffs(r, utc(2026, 3, 2, 14, 0), 2)
    assert first == utc(2026, 3, 9, 13, 0) and first - utc(2026, 3, 2, 14, 0) == timedelta(hours=167)
    assert second - first == timedelta(hours=168)
    assert oncall_at(r, [], first - timedelta(seconds=1)) == ALICE
    # A fixed 168-hour week would still say ALICE for another hour.
    assert oncall_at(r, [], first) == BOB
    assert oncall_at(r, [], utc(2026, 3, 9, 13, 30)) == BOB


def test_fall_back_week_is_169_hours() -> None:
    # Monday 2026-10-26 09:00 EDT = 13:00 UTC; DST ends Sunday 11-01; Monday 11-02 09:00 EST = 14:00 UTC.
    r = rotation(date(2026, 10, 26))
    [handoff] = handoffs(r, utc(2026, 10, 26, 13, 0), 1)
    assert handoff == utc(2026, 11, 2, 14, 0) and handoff - utc(2026, 10, 26, 13, 0) == timedelta(hours=169)
    assert oncall_at(r, [], utc(2026, 11, 2, 13, 30)) == ALICE
    assert oncall_at(r, [], utc(2026, 11, 2, 14, 0)) == BOB


def test_handoff_at_a_wall_time_the_clock_skips_or_repeats() -> None:
    # Sunday 02:30 does not exist on 2026-03-08 in New York: the handoff happens at 03:30 EDT (07:30 UTC).
    spring = rotation(date(2026, 3, 1), weekday=6, at=time(2, 30))
    assert oncall_at(spring, [], utc(2026, 3, 8, 7, 29)) == ALICE
    assert oncall_at(spring, [], utc(2026, 3, 8, 7, 30)) == BOB
    # Sunday 01:30 happens twice on 2026-11-01: the handoff is at the first one (EDT, 05:30 UTC).
    autumn = rotation(date(2026, 10, 25), weekday=6, at=time(1, 30))
    assert oncall_at(autumn, [], utc(2026, 11, 1, 5, 29)) == ALICE
    assert oncall_at(autumn, [], utc(2026, 11, 1, 5, 30)) == BOB


def test_boundaries_wraparound_and_before_the_start() -> None:
    r = rotation(date(2026, 1, 5), tz="Europe/Paris")  # a Monday; 09:00 CET = 08:00 UTC
    start = utc(2026, 1, 5, 8, 0)
    assert oncall_at(r, [], start - timedelta(microseconds=1)) is None
    assert shift_index(r, start - timedelta(days=30)) is None
    assert oncall(r, [], start) == OnCall(ALICE, OnCallSource.rotation)
    for week, who in enumerate([ALICE, BOB, CAROL, ALICE, BOB]):
        handoff = start + timedelta(weeks=week)
        assert oncall_at(r, [], handoff) == who, week
        assert oncall_at(r, [], handoff + timedelta(days=6, hours=23, minutes=59)) == who, week
    # Any timezone for the question: the answer depends on the instant only.
    paris_handoff = datetime(2026, 1, 12, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert oncall_at(r, [], paris_handoff) == BOB
    assert oncall_at(rotation(date(2026, 1, 5), people=()), [], start) is None


def test_a_start_off_the_handoff_day_is_a_short_first_shift() -> None:
    r = rotation(date(2026, 1, 7), tz="UTC")  # a Wednesday; handoffs on Mondays
    assert oncall_at(r, [], utc(2026, 1, 7, 8, 59)) is None
    assert oncall_at(r, [], utc(2026, 1, 7, 9, 0)) == ALICE
    assert oncall_at(r, [], utc(2026, 1, 12, 8, 59)) == ALICE
    assert oncall_at(r, [], utc(2026, 1, 12, 9, 0)) == BOB
    assert handoffs(r, utc(2026, 1, 1), 2) == [utc(2026, 1, 7, 9, 0), utc(2026, 1, 12, 9, 0)]


def test_overrides_contain_end_exclusive_and_the_newest_wins() -> None:
    r = rotation(date(2026, 1, 5), tz="UTC")
    created = utc(2026, 1, 1)
    week = Override(user_id=CAROL, starts_at=utc(2026, 1, 6), ends_at=utc(2026, 1, 8), created_at=created, id=1)
    # Created later and overlapping the first: it wins where both cover.
    day = Override(user_id=BOB, starts_at=utc(2026, 1, 7), ends_at=utc(2026, 1, 9), created_at=created + timedelta(hours=1), id=2)
    overrides = [day, week]
    assert oncall(r, overrides, utc(2026, 1, 5, 23)) == OnCall(ALICE, OnCallSource.rotation)
    assert oncall(r, overrides, utc(2026, 1, 6)) == OnCall(CAROL, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 7)) == OnCall(BOB, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 8, 23, 59)) == OnCall(BOB, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 9)) == OnCall(ALICE, OnCallSource.rotation)  # end exclusive
    # Same creation time: the higher id (inserted later) wins.
    tie = Override(user_id=CAROL, starts_at=utc(2026, 1, 7), ends_at=utc(2026, 1, 8), created_at=day.created_at, id=3)
    assert oncall_at(r, [tie, day], utc(2026, 1, 7, 12)) == CAROL
    # An override also covers a schedule with nobody on the rotation, and before its start.
    empty = rotation(date(2027, 1, 4), tz="UTC", people=())
    assert oncall(empty, overrides, utc(2026, 1, 6, 12)) == OnCall(CAROL, OnCallSource.override)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        oncall_at(rotation(date(2026, 1, 5)), [], datetime(2026, 1, 6))
