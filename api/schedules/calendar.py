"""Calendar subscriptions: an iCal feed of a schedule's shifts, or of one user's on every schedule, at a secret URL.

The token is the only key (calendar apps send no headers), so it is stored as a hash, like API keys, and can be
rotated or revoked. Shifts are layers and overrides merged; times carry the schedule's (or user's) time zone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Response, status
from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.admin import get_or_404, invalid, unknown_ids
from api.deps import Principal, SessionDep, StateDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError
from api.schedules.schemas import FeedCreate, FeedCreated, FeedRead
from api.access_log import redact_tokens_after
from vigil.contracts import Id
from vigil.models import CalendarFeed, Schedule, User, utcnow
from vigil.oncall import Shift
from vigil.schedules import shifts_of
from vigil.security import Role, hash_key, key_prefix, new_key

router = APIRouter(tags=["calendars"])
FEED_PATH = "/api/v1/calendars"
PAST = timedelta(days=7)  # a feed also shows the last week: "who had it on Tuesday?"
# Shifts are computed this far beyond the window, so one that crosses its edge keeps its true start (its UID).
LOOKAROUND = timedelta(days=14)
VIEW = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)}
Token = Annotated[str, Path(min_length=1, max_length=200, description="The feed's secret token.")]


redact_tokens_after("/calendars/")


def _read(row: CalendarFeed) -> FeedRead:
    return FeedRead(id=row.id, schedule_id=row.schedule_id, user_id=row.user_id, owner_id=row.owner_id,
                    prefix=row.prefix, created_at=row.created_at, revoked_at=row.revoked_at)


def _created(state: StateDep, row: CalendarFeed, token: str) -> FeedCreated:
    url = f"{state.settings.core.public_url.rstrip('/')}{FEED_PATH}/{token}.ics"
    return FeedCreated(**_read(row).model_dump(), token=token, url=url)


def _own(session: Session, user: Principal, feed_id: int) -> CalendarFeed:
    """The feed, if `user` made it or is an admin; 404 otherwise (another's feed is not confirmed to exist)."""
    row = session.get(CalendarFeed, feed_id)
    if row is None or (user.role != Role.admin and row.owner_id != user.user_id):
        raise ApiError(404, "not_found", f"calendar feed {feed_id} does not exist")
    return row


@router.post("/api/v1/calendar-feeds", status_code=status.HTTP_201_CREATED, response_model=FeedCreated,
             responses=VIEW)
def create_feed(body: FeedCreate, user: Viewer, session: SessionDep, state: StateDep) -> FeedCreated:
    """A secret iCal URL for a schedule (anyone who may see on-call) or a user (yourself; admins: anyone).
    `token` and `url` are shown only here."""
    if body.user_id is not None and body.user_id != user.user_id and user.role != Role.admin:
        raise ApiError(403, "forbidden", "only an admin may make a calendar feed of another user")
    problems = (unknown_ids(session, Schedule, [body.schedule_id], "body.schedule_id", "schedule")
                if body.schedule_id is not None else unknown_ids(session, User, [body.user_id], "body.user_id", "user"))
    if problems:
        raise invalid([(problems[0][0].rpartition(".")[0], problems[0][1])])
    token = new_key("cal")
    row = CalendarFeed(schedule_id=body.schedule_id, user_id=body.user_id, owner_id=user.user_id,
                       prefix=key_prefix(token), token_hash=hash_key(token))
    session.add(row)
    session.commit()
    return _created(state, row, token)


@router.get("/api/v1/calendar-feeds", response_model=list[FeedRead], responses=VIEW)
def list_feeds(user: Viewer, session: SessionDep) -> list[FeedRead]:
    """Yours (an admin's: every feed), revoked ones included, by id."""
    query = select(CalendarFeed).order_by(CalendarFeed.id)
    if user.role != Role.admin:
        query = query.where(CalendarFeed.owner_id == user.user_id)
    return [_read(r) for r in session.scalars(query)]


@router.post("/api/v1/calendar-feeds/{feed_id:int}/rotate", response_model=FeedCreated, responses=VIEW)
def rotate_feed(feed_id: Id, user: Viewer, session: SessionDep, state: StateDep) -> FeedCreated:
    """A new token for the feed; the old URL answers 404 from now on."""
    row = _own(session, user, feed_id)
    if row.revoked_at is not None:
        raise ApiError(409, "conflict", f"calendar feed {feed_id} is revoked; make a new one")
    token = new_key("cal")
    row.prefix, row.token_hash = key_prefix(token), hash_key(token)
    session.commit()
    return _created(state, row, token)


@router.delete("/api/v1/calendar-feeds/{feed_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=VIEW)
def revoke_feed(feed_id: Id, user: Viewer, session: SessionDep) -> None:
    """Its URL answers 404 from now on (idempotent)."""
    row = _own(session, user, feed_id)
    row.revoked_at = row.revoked_at or utcnow()
    session.commit()


@router.get(
    f"{FEED_PATH}/{{token}}.ics", response_class=Response,
    responses={200: {"content": {"text/calendar": {"schema": {"type": "string"}}},
                     "description": "An iCalendar (RFC 5545) feed: one event per shift."},
               404: ERROR_RESPONSES[404], 422: ERROR_RESPONSES[422]},
)
async def calendar(
    token: Token, state: StateDep,
    weeks: Annotated[int, Query(ge=1, le=52, description="How many weeks ahead.")] = 12,
) -> Response:
    """The feed (no API key: the token in the URL is the key). Wrong or revoked token: 404."""
    body = await asyncio.to_thread(_feed, state, token, weeks)
    return Response(body, media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": 'inline; filename="vigil-oncall.ics"',
                             "Cache-Control": "private, max-age=300"})


def _feed(state: StateDep, token: str, weeks: int) -> bytes:
    with state.sessions() as session:
        row = session.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == hash_key(token)))
        if row is None or row.revoked_at is not None:
            raise ApiError(404, "not_found", "no calendar feed has this token")
        now = utcnow().replace(microsecond=0)
        start, end = now - PAST, now + timedelta(weeks=weeks)
        if row.schedule_id is not None:
            schedule = get_or_404(session, Schedule, row.schedule_id, "schedule")
            names = {u.id: u.name for u in session.scalars(select(User))}
            cal = _calendar(f"On call: {schedule.name}", schedule.timezone)
            for shift in _shifts(session, schedule, start, end):
                who = names.get(shift.user_id, f"user {shift.user_id}")
                _add(cal, schedule, shift, now, schedule.timezone, f"On call: {who} ({schedule.name})")
        else:
            user = get_or_404(session, User, row.user_id or 0, "user")
            cal = _calendar(f"On call: {user.name}", user.timezone)
            for schedule in session.scalars(select(Schedule).order_by(Schedule.id)):
                for shift in _shifts(session, schedule, start, end):
                    if shift.user_id == user.id:
                        _add(cal, schedule, shift, now, user.timezone, f"On call: {schedule.name}")
    cal.add_missing_timezones()
    return cal.to_ical()


def _shifts(session: Session, schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The shifts that overlap [start, end), with their true start and end (up to LOOKAROUND beyond)."""
    found = shifts_of(session=session, schedule=schedule, start=start - LOOKAROUND, end=end + LOOKAROUND)
    return [s for s in found if s.end > start and s.start < end]


def _calendar(name: str, tz: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", "-//Vigil//On-call schedules//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", tz)
    # How often subscribers should fetch again (RFC 7986; X-PUBLISHED-TTL for Outlook).
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT1H")
    return cal


def _add(cal: Calendar, schedule: Schedule, shift: Shift, now: datetime, tz: str, summary: str) -> None:
    zone = ZoneInfo(tz)
    event = Event()
    # Stable per shift: the same shift keeps its UID on every fetch, so calendars update it instead of duplicating.
    event.add("uid", f"vigil-shift-{schedule.id}-{shift.user_id}-{shift.start:%Y%m%dT%H%M%SZ}@vigil")
    event.add("dtstamp", now)
    event.add("dtstart", shift.start.astimezone(zone))
    event.add("dtend", shift.end.astimezone(zone))
    event.add("summary", summary)
    event.add("description", f"Schedule {schedule.name} (id {schedule.id}), {schedule.timezone}.")
    event.add("transp", "TRANSPARENT")  # being on call does not make anyone busy
    cal.add_component(event)
