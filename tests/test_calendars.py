"""Calendar subscriptions over real HTTP: the iCal feed of a schedule and of a user, parsed back with `icalendar`
(exact shift times, time zones across a DST change, stable UIDs, DTSTAMP), and the secret URL's life (wrong,
rotated, revoked: 404; who may make, see and revoke a feed)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Keys
from tests.test_api import assert_error
from vigil.models import User

PARIS = ZoneInfo("Europe/Paris")


async def call(api: httpx.AsyncClient, key: str, method: str, path: str, body: object = None, status: int = 200) -> dict:
    resp = await api.request(method, f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else {}


async def fetch(api: httpx.AsyncClient, url: str, **params: object) -> Calendar:
    resp = await api.get(httpx.URL(url).path, params=params)  # no API key: the token is the key
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/calendar; charset=utf-8"
    return Calendar.from_ical(resp.content)


async def people(api: httpx.AsyncClient, keys: Keys, *names: str) -> list[int]:
    tag = uuid.uuid4().hex[:6]
    return [(await call(api, keys.admin, "POST", "users", {"name": n, "email": f"{n.lower()}-{tag}@example.com"}, 201))["id"]
            for n in names]


async def test_a_schedule_feed_lists_each_shift_at_local_time_across_dst(api: httpx.AsyncClient, keys: Keys) -> None:
    alice, bob = await people(api, keys, "Alice", "Bob")
    start = datetime.now(PARIS).date() - timedelta(days=3)
    schedule = await call(api, keys.admin, "POST", "schedules", {"name": "primary", "timezone": "Europe/Paris", "layers": [
        {"kind": "daily", "handoff_time": "09:00", "rotation_start": start.isoformat(), "participants": [alice, bob]},
    ]}, 201)
    feed = await call(api, keys.viewer, "POST", "calendar-feeds", {"schedule_id": schedule["id"]}, 201)
    assert feed["url"].endswith(f"/api/v1/calendars/{feed['token']}.ics") and feed["token"].startswith(feed["prefix"])

    # 35 weeks ahead always hold a DST change of Europe/Paris.
    cal = await fetch(api, feed["url"], weeks=35)
    assert str(cal["X-WR-CALNAME"]) == "On call: primary" and str(cal["VERSION"]) == "2.0"
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]
    events = list(cal.walk("VEVENT"))
    now = datetime.now(UTC)
    assert len(events) >= 7 * 35
    lengths = set()
    for i, event in enumerate(events):
        day = start + timedelta(days=(event.start.date() - start).days)
        who = (alice, bob)[(day - start).days % 2]
        assert str(event["SUMMARY"]) == f"On call: {'Alice' if who == alice else 'Bob'} (primary)"
        # Exact: 09:00 Paris wall time on each day, whatever the offset that day, until 09:00 the next day.
        assert event.start == datetime.combine(day, time(9), tzinfo=PARIS), i
        assert event.end == datetime.combine(day + timedelta(days=1), time(9), tzinfo=PARIS), i
        assert event["DTSTART"].params["TZID"] == "Europe/Paris"
        assert event.decoded("DTSTAMP").tzinfo is not None
        lengths.add(event.end.astimezone(UTC) - event.start.astimezone(UTC))
    assert events[0].start == datetime.combine(start, time(9), tzinfo=PARIS)  # the rotation's start, in the past week
    assert events[-1].start.astimezone(UTC) < now + timedelta(weeks=35)
    assert {timedelta(hours=24)} < lengths <= {timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)}
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == len(uids)
    # The same shifts keep their UIDs on the next fetch (calendars update them instead of adding copies).
    again = [str(e["UID"]) for e in (await fetch(api, feed["url"], weeks=35)).walk("VEVENT")]
    assert again == uids


async def test_a_user_feed_has_their_shifts_on_every_schedule(
    api: httpx.AsyncClient, keys: Keys, sessions: sessionmaker[Session],
) -> None:
    alice, bob = await people(api, keys, "Alice", "Bob")
    monday = date.today() - timedelta(days=date.today().weekday())
    for name, tz, order in (("primary", "America/New_York", [alice, bob]), ("secondary", "UTC", [bob, alice])):
        await call(api, keys.admin, "POST", "schedules", {"name": name, "timezone": tz, "layers": [
            {"kind": "weekly", "rotation_start": monday.isoformat(), "participants": order}]}, 201)
    feed = await call(api, keys.admin, "POST", "calendar-feeds", {"user_id": alice}, 201)
    events = list((await fetch(api, feed["url"], weeks=4)).walk("VEVENT"))
    assert {str(e["SUMMARY"]) for e in events} == {"On call: primary", "On call: secondary"}
    primary = sorted(e.start for e in events if str(e["SUMMARY"]) == "On call: primary")
    # Alice has every other week of primary, handing off Mondays 09:00 New York time (shown in her zone, UTC).
    assert primary[0] == datetime.combine(monday, time(9), tzinfo=ZoneInfo("America/New_York"))
    assert all(b - a == timedelta(weeks=2) for a, b in zip(primary, primary[1:], strict=False))
    assert all(e.start.utcoffset() == timedelta(0) and "TZID" not in e["DTSTART"].params for e in events)  # UTC: "Z"

    # Anyone may make a feed of a schedule or of themselves; only an admin of someone else.
    with sessions() as session:
        vic = session.scalar(select(User.id).where(User.email == "vic@test"))
    err = assert_error(await api.post("/api/v1/calendar-feeds", json={"user_id": alice},
                                      headers=keys.auth(keys.viewer)), 403, "forbidden")
    assert "admin" in err["message"]
    mine = await call(api, keys.viewer, "POST", "calendar-feeds", {"user_id": vic}, 201)
    assert list((await fetch(api, mine["url"])).walk("VEVENT")) == []  # on no schedule: an empty calendar
    assert [f["id"] for f in await call(api, keys.viewer, "GET", "calendar-feeds")] == [mine["id"]]
    assert {f["id"] for f in await call(api, keys.admin, "GET", "calendar-feeds")} == {feed["id"], mine["id"]}
    await call(api, keys.viewer, "DELETE", f"calendar-feeds/{feed['id']}", status=404)  # not theirs


async def test_a_wrong_rotated_or_revoked_token_is_404(api: httpx.AsyncClient, keys: Keys) -> None:
    [alice] = await people(api, keys, "Alice")
    schedule = await call(api, keys.admin, "POST", "schedules", {"name": "primary", "timezone": "UTC",
                                                                 "rotation_start": "2026-01-05", "participants": [alice]}, 201)
    feed = await call(api, keys.viewer, "POST", "calendar-feeds", {"schedule_id": schedule["id"]}, 201)
    path = httpx.URL(feed["url"]).path
    assert (await api.get(path)).status_code == 200
    assert_error(await api.get(path.replace(feed["token"], feed["token"][:-2] + "xx")), 404, "not_found")
    assert_error(await api.get("/api/v1/calendars/nothing.ics"), 404, "not_found")
    assert_error(await api.get(path, params={"weeks": 0}), 422, "validation_error")

    rotated = await call(api, keys.viewer, "POST", f"calendar-feeds/{feed['id']}/rotate")
    assert rotated["id"] == feed["id"] and rotated["token"] != feed["token"]
    assert_error(await api.get(path), 404, "not_found")
    new_path = httpx.URL(rotated["url"]).path
    assert (await api.get(new_path)).status_code == 200

    await call(api, keys.admin, "DELETE", f"calendar-feeds/{feed['id']}", status=204)  # an admin may revoke any
    assert_error(await api.get(new_path), 404, "not_found")
    [listed] = await call(api, keys.viewer, "GET", "calendar-feeds")
    assert listed["revoked_at"] is not None and "token" not in listed
    assert_error(await api.post(f"/api/v1/calendar-feeds/{feed['id']}/rotate", headers=keys.auth(keys.viewer)),
                 409, "conflict")
    err = assert_error(await api.post("/api/v1/calendar-feeds", json={"schedule_id": 4242},
                                      headers=keys.auth(keys.viewer)), 422, "validation_error")
    assert [d["field"] for d in err["details"]] == ["body.schedule_id"]
    assert_error(await api.post("/api/v1/calendar-feeds", json={}, headers=keys.auth(keys.viewer)), 422,
                 "validation_error")
    # A deleted schedule takes its feeds with it.
    await call(api, keys.admin, "DELETE", f"schedules/{schedule['id']}", status=204)
    assert await call(api, keys.viewer, "GET", "calendar-feeds") == []
