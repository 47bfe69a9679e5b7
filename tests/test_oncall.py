"""On-call from rotations (weekly, daily, hourly), layers and overrides: handoffs across DST, boundaries, timelines."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from vigil.oncall import (
    Layer,
    OnCall,
    OnCallSource,
    Override,
    Restriction,
    Rotation,
    RotationKind,
    Shift,
    handoffs,
    next_change,
    oncall,
    oncall_at,
    oncall_in_layers,
    shift_index,
    timeline,
)

ALICE, BOB, CAROL = 1, 2, 3


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rotation(start: date, *, tz: str = "America/New_York", weekday: int = 0, at: time = time(9, 0),
             people: tuple[int, ...] = (ALICE, BOB, CAROL), kind: RotationKind = RotationKind.weekly,
             every: int = 1) -> Rotation:
    return Rotation(timezone=tz, handoff_weekday=weekday, handoff_time=at, start=start, participants=people,
                    kind=kind, every=every)


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
    assert oncall(r, [], start) == OnCall(ALICE, OnCallSource.rotation, 0)
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
    assert oncall(r, overrides, utc(2026, 1, 5, 23)) == OnCall(ALICE, OnCallSource.rotation, 0)
    assert oncall(r, overrides, utc(2026, 1, 6)) == OnCall(CAROL, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 7)) == OnCall(BOB, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 8, 23, 59)) == OnCall(BOB, OnCallSource.override)
    assert oncall(r, overrides, utc(2026, 1, 9)) == OnCall(ALICE, OnCallSource.rotation, 0)  # end exclusive
    # Same creation time: the higher id (inserted later) wins.
    tie = Override(user_id=CAROL, starts_at=utc(2026, 1, 7), ends_at=utc(2026, 1, 8), created_at=day.created_at, id=3)
    assert oncall_at(r, [tie, day], utc(2026, 1, 7, 12)) == CAROL
    # An override also covers a schedule with nobody on the rotation, and before its start.
    empty = rotation(date(2027, 1, 4), tz="UTC", people=())
    assert oncall(empty, overrides, utc(2026, 1, 6, 12)) == OnCall(CAROL, OnCallSource.override)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        oncall_at(rotation(date(2026, 1, 5)), [], datetime(2026, 1, 6))


# --- daily and hourly rotations -------------------------------------------------------------------


@pytest.mark.parametrize(("tz", "day", "before", "after"), [
    # Paris: CET (UTC+1) until Sunday 2026-03-29 02:00, CEST (UTC+2) after; back to CET on 2026-10-25.
    ("Europe/Paris", date(2026, 3, 28), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)),
    ("Europe/Paris", date(2026, 10, 24), utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)),
    # New York: EST (UTC-5) until Sunday 2026-03-08, EDT (UTC-4) after; back to EST on 2026-11-01.
    ("America/New_York", date(2026, 3, 7), utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)),
    ("America/New_York", date(2026, 10, 31), utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)),
])
def test_a_daily_handoff_stays_at_the_local_wall_time_across_dst(
    tz: str, day: date, before: datetime, after: datetime,
) -> None:
    r = rotation(day, tz=tz, kind=RotationKind.daily)  # 09:00 local, every day
    assert oncall_at(r, [], before - timedelta(seconds=1)) is None
    assert oncall_at(r, [], before) == ALICE
    [handoff, next_day] = handoffs(r, before, 2)
    assert handoff == after  # 09:00 local the next day: 23 or 25 hours later
    assert abs(handoff - before) != timedelta(hours=24)
    assert next_day - handoff == timedelta(hours=24)
    assert oncall_at(r, [], after - timedelta(seconds=1)) == ALICE
    assert oncall_at(r, [], after) == BOB
    assert datetime.fromtimestamp(after.timestamp(), ZoneInfo(tz)).time() == time(9, 0)


def test_every_n_days_and_every_n_weeks() -> None:
    three_days = rotation(date(2026, 1, 1), tz="UTC", kind=RotationKind.daily, every=3)
    assert [oncall_at(three_days, [], utc(2026, 1, d, 9)) for d in (1, 3, 4, 6, 7, 10)] == [
        ALICE, ALICE, BOB, BOB, CAROL, ALICE]
    fortnight = rotation(date(2026, 1, 5), tz="UTC", every=2)  # Mondays, every second one
    assert handoffs(fortnight, utc(2026, 1, 5, 9), 2) == [utc(2026, 1, 19, 9), utc(2026, 2, 2, 9)]
    assert oncall_at(fortnight, [], utc(2026, 1, 18, 23)) == ALICE
    assert oncall_at(fortnight, [], utc(2026, 1, 19, 9)) == BOB


@pytest.mark.parametrize(("tz", "night"), [("Europe/Paris", date(2026, 3, 28)), ("America/New_York", date(2026, 3, 7)),
                                           ("Europe/Paris", date(2026, 10, 24)), ("America/New_York", date(2026, 10, 31))])
def test_an_hourly_rotation_counts_real_hours_across_dst(tz: str, night: date) -> None:
    r = rotation(night, tz=tz, at=time(20, 0), kind=RotationKind.hourly, every=8)
    begin = datetime.combine(night, time(20, 0), tzinfo=ZoneInfo(tz)).astimezone(UTC)
    marks = [begin, *handoffs(r, begin, 4)]
    assert [b - a for a, b in zip(marks, marks[1:], strict=False)] == [timedelta(hours=8)] * 4
    for k, at in enumerate(marks):
        assert oncall_at(r, [], at) == (ALICE, BOB, CAROL)[k % 3]
        assert oncall_at(r, [], at - timedelta(seconds=1)) == (None if k == 0 else (ALICE, BOB, CAROL)[(k - 1) % 3])
    # Real hours, so the local clock time of the handoffs moves with the DST change: 04:00 becomes 05:00 or 03:00.
    shift = 1 if night.month == 3 else -1
    assert [m.astimezone(ZoneInfo(tz)).hour for m in marks] == [20, 4 + shift, 12 + shift, 20 + shift, 4 + shift]


# --- layers and restrictions ---------------------------------------------------------------------


def business_hours(start: date) -> Layer:
    """CAROL on weekdays 09:00-17:00 Paris time."""
    return Layer(rotation(start, tz="Europe/Paris", people=(CAROL,)),
                 Restriction(weekdays=frozenset(range(5)), start=time(9), end=time(17)), name="day")


def test_the_higher_layer_wins_where_it_has_someone_and_gaps_fall_through() -> None:
    base = Layer(rotation(date(2026, 1, 5), tz="Europe/Paris", people=(ALICE, BOB)), name="base")
    layers = [base, business_hours(date(2026, 1, 5))]
    # Monday 2026-01-05, Paris = UTC+1.
    assert oncall_in_layers(layers, [], utc(2026, 1, 5, 8)) == OnCall(CAROL, OnCallSource.rotation, 1)
    assert oncall_in_layers(layers, [], utc(2026, 1, 5, 15, 59)) == OnCall(CAROL, OnCallSource.rotation, 1)
    assert oncall_in_layers(layers, [], utc(2026, 1, 5, 16)) == OnCall(ALICE, OnCallSource.rotation, 0)  # falls through
    assert oncall_in_layers(layers, [], utc(2026, 1, 10, 12)) == OnCall(ALICE, OnCallSource.rotation, 0)  # Saturday
    assert oncall_in_layers(layers, [], utc(2026, 1, 12, 12)) == OnCall(CAROL, OnCallSource.rotation, 1)
    assert oncall_in_layers(layers, [], utc(2026, 1, 12, 18)) == OnCall(BOB, OnCallSource.rotation, 0)
    # The higher layer with nobody in it (before its start, or empty) decides nothing.
    late = [base, business_hours(date(2027, 1, 4))]
    assert oncall_in_layers(late, [], utc(2026, 1, 5, 8)) == OnCall(ALICE, OnCallSource.rotation, 0)
    # An override wins over every layer.
    o = Override(user_id=BOB, starts_at=utc(2026, 1, 5, 10), ends_at=utc(2026, 1, 5, 11), created_at=utc(2026, 1, 1))
    assert oncall_in_layers(layers, [o], utc(2026, 1, 5, 10, 30)) == OnCall(BOB, OnCallSource.override)
    assert oncall_in_layers(layers, [o], utc(2026, 1, 5, 11)) == OnCall(CAROL, OnCallSource.rotation, 1)
    assert oncall_in_layers([], [], utc(2026, 1, 5, 11)) is None


def test_an_overnight_window_belongs_to_the_day_it_starts() -> None:
    nights = Layer(rotation(date(2026, 1, 5), tz="UTC", people=(CAROL,)),
                   Restriction(weekdays=frozenset({4}), start=time(22), end=time(6)))  # Friday 22:00 - Saturday 06:00
    assert oncall_in_layers([nights], [], utc(2026, 1, 9, 21, 59)) is None
    assert oncall_in_layers([nights], [], utc(2026, 1, 9, 22)) == OnCall(CAROL, OnCallSource.rotation, 0)
    assert oncall_in_layers([nights], [], utc(2026, 1, 10, 5, 59)) == OnCall(CAROL, OnCallSource.rotation, 0)
    assert oncall_in_layers([nights], [], utc(2026, 1, 10, 6)) is None
    assert oncall_in_layers([nights], [], utc(2026, 1, 10, 23)) is None  # Saturday night is not Friday's
    weekends = Layer(rotation(date(2026, 1, 5), tz="UTC", people=(BOB,)), Restriction(weekdays=frozenset({5, 6})))
    assert oncall_in_layers([weekends], [], utc(2026, 1, 9, 23, 59)) is None
    assert oncall_in_layers([weekends], [], utc(2026, 1, 10)) == OnCall(BOB, OnCallSource.rotation, 0)
    assert oncall_in_layers([weekends], [], utc(2026, 1, 12)) is None


def test_timeline_merges_layers_and_overrides_into_shifts() -> None:
    base = Layer(rotation(date(2026, 1, 5), tz="Europe/Paris", people=(ALICE, BOB)))
    layers = [base, business_hours(date(2026, 1, 5))]
    o = Override(user_id=ALICE, starts_at=utc(2026, 1, 6, 12), ends_at=utc(2026, 1, 6, 20), created_at=utc(2026, 1, 1))
    got = timeline(layers, [o], utc(2026, 1, 5, 0), utc(2026, 1, 7, 0))  # the rotations start at 08:00 UTC
    assert got == [
        Shift(CAROL, utc(2026, 1, 5, 8), utc(2026, 1, 5, 16)),
        Shift(ALICE, utc(2026, 1, 5, 16), utc(2026, 1, 6, 8)),
        Shift(CAROL, utc(2026, 1, 6, 8), utc(2026, 1, 6, 12)),
        # The override and the base layer both say ALICE: one shift.
        Shift(ALICE, utc(2026, 1, 6, 12), utc(2026, 1, 7, 0)),
    ]
    # Before the start nobody is on call: no shift, not a shift of nobody.
    assert timeline([base], [], utc(2026, 1, 4), utc(2026, 1, 5, 9)) == [Shift(ALICE, utc(2026, 1, 5, 8), utc(2026, 1, 5, 9))]
    assert next_change(layers, [o], utc(2026, 1, 6, 9)) == utc(2026, 1, 6, 12)
    assert next_change(layers, [o], utc(2026, 1, 6, 12)) == utc(2026, 1, 7, 8)
    assert next_change([Layer(rotation(date(2026, 1, 5), people=(ALICE,)))], [], utc(2026, 1, 6)) is None
